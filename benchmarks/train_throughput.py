"""Training throughput: mtl_reco, per setting, vs Torch-RecHub 0.9.0 in one run.

Every architecture at the light and heavy sizes of ``_sizes.py`` trains on
the same synthetic Ali-CCP-shaped rows with the same batch, Adam (lr 1e-3,
weight decay 1e-4) and objective (mean of the task losses; ESMM: the sum),
``--epochs`` epochs of ``--rows`` rows after an untimed warm-up, the
variants interleaved (order reversed every other repetition): mtl_reco's
``Trainer.fit`` per setting - ``default`` (the plain model), ``compile``
(``TrainerConfig(compile=True)``), ``kernels`` (MMoE and PLE with
``expert_layout="manual"``; for the other models it is ``default``) - then
Torch-RecHub's ``train_one_epoch`` (``rechub``) and its model, loss and Adam
on prebuilt batches (``rechub_prebuilt``); its DataLoader alone once per
size. ``gemm_share`` = 3 x forward matmul FLOPs x samples/s over the best
float32 GEMM GFLOP/s of the run. ``--profile``: the heavy step of
``--profile-models`` under torch.profiler, by phase and model part.

    python benchmarks/train_throughput.py --repeats 3
    python benchmarks/train_throughput.py --sizes heavy --models mmoe,ple
    python benchmarks/train_throughput.py --settings default,kernels --threads 1
    python benchmarks/train_throughput.py --quick     # CI: default and kernels

Writes ``results/train_throughput.json`` (``--quick``: ``..._quick.json``).
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

import _rechub
import _sizes
import harness
from _sizes import ARCHS, SIZES, TASKS
from harness import Table, option
from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.modeling.trainer import Trainer
from mtl_reco.modeling.weighting.registry import build_strategy

NAME = "train_throughput"
SETTINGS = ("default", "compile", "kernels")
LR, WEIGHT_DECAY = 1e-3, 1e-4
TARGETS = {"light": {"ratio": 10.0}, "heavy": {"ratio": 1.5, "gemm_share": 0.70}}
#: model parts by module class (the outermost wins); other forward ops are glue
PARTS = {"FeatureEmbedding": "embedding", "ExpertBank": "experts",
         "SoftmaxGate": "gates", "Tower": "towers", "MLP": "mlp",
         "InformationTransfer": "information_transfer"}  # fmt: skip


@dataclass
class Options(harness.Config):
    sizes: tuple[str, ...] = option(tuple(SIZES), "size classes", choices=SIZES)
    models: tuple[str, ...] = option(ARCHS, "architectures", choices=ARCHS)
    settings: tuple[str, ...] = option(
        SETTINGS, "mtl_reco settings", quick=("default", "kernels"), choices=SETTINGS
    )
    rows: int = option(131_072, "rows per epoch", quick=1024)
    epochs: int = option(2, "timed epochs per run", quick=1)
    repeats: int = option(1, "interleaved repetitions")
    warmup_batches: int = option(8, "untimed warm-up batches", quick=1)
    batch_size: int | None = option(None, "batch (default: the size's)", quick=256)
    seed: int = option(2026, "data and model seed")
    gemm_n: int = option(2048, "GEMM reference size", quick=512)
    profile: bool = option(True, "profile the heavy step", quick=False)
    profile_models: tuple[str, ...] = option(("mmoe", "ple"), "", choices=ARCHS)
    profile_steps: int = option(20, "steps timed and profiled", quick=4)

    def batch(self, size: str) -> int:
        return self.batch_size or int(SIZES[size]["batch_size"])


def make_trainer(arch: str, size: str, setting: str, schema: Any, opts: Options,
                 epochs: int) -> tuple[Trainer, Any]:  # fmt: skip
    params = _sizes.model_params(size, arch)
    if setting == "kernels":
        params["expert_layout"] = "manual"
    torch.manual_seed(opts.seed)
    model = build_model(arch, schema, list(TASKS), params)
    weights = dict.fromkeys(TASKS, 1.0 if arch == "esmm" else 1.0 / len(TASKS))
    strategy = build_strategy("fixed", model.task_names, {"weights": weights})
    config = {
        "device": "cpu", "epochs": epochs, "batch_size": opts.batch(size),
        "seed": opts.seed, "progress": False, "early_stopping": {"patience": 0},
        "optimizer": {"name": "adam", "lr": LR, "weight_decay": WEIGHT_DECAY},
    }  # fmt: skip
    if setting == "compile":
        config["compile"] = True
    return Trainer(model, strategy, TrainerConfig.from_dict(config)), model


def run_ours(arch: str, size: str, setting: str, data: Any, opts: Options) -> dict:
    """Warm up, then time ``Trainer.fit`` over ``epochs`` epochs of the table."""
    schema, table, _ = data
    trainer, _ = make_trainer(arch, size, setting, schema, opts, opts.epochs)
    warm = min(len(table), opts.warmup_batches * opts.batch(size))
    trainer.fit(table.subset(torch.arange(warm)))
    start = time.perf_counter()
    trainer.fit(table)
    return {"seconds": time.perf_counter() - start, "samples": opts.epochs * len(table)}


def bench_model(arch: str, size: str, data: Any, opts: Options) -> dict[str, Any]:
    """Interleaved repetitions of every variant for one architecture and size."""
    schema, table, arrays = data
    settings = [
        s for s in opts.settings if s != "kernels" or arch in _sizes.EXPERT_MODELS
    ]
    variants = [*settings, "rechub", "rechub_prebuilt"]
    runs: dict[str, list[float]] = {v: [] for v in variants}
    errors, samples = {}, {}
    for rep in range(opts.repeats):
        hub = _rechub.ThroughputRun(
            arch, arrays, _sizes.embedding_dim(size, arch), SIZES[size]["models"][arch],
            opts.batch(size), LR, WEIGHT_DECAY, opts.seed,
        )  # fmt: skip
        try:
            hub.warm_up(opts.warmup_batches)
            for variant in variants if rep % 2 == 0 else variants[::-1]:
                if variant == "rechub":
                    res = {"seconds": hub.train_epochs(opts.epochs)}
                elif variant == "rechub_prebuilt":
                    res = {"seconds": hub.train_prebuilt(opts.epochs)}
                elif variant not in errors:
                    res = harness.guarded(run_ours, arch, size, variant, data, opts)
                    torch.compiler.reset()  # free a compiled graph
                if "error" in res:
                    errors[variant] = res["error"]
                    harness.say(f"  [{size}] {arch} {variant}: {res['error']}")
                    continue
                samples[variant] = res.get("samples", opts.epochs * len(hub.arrays))
                runs[variant].append(samples[variant] / res["seconds"])
                rate = runs[variant][-1]
                harness.say(f"  [{size}] {arch:13s} {variant:15s} {rate:>11,.0f}/s")
        finally:
            hub.close()
    rates = {
        v: {"samples_per_s": statistics.median(r), "samples_per_s_best": max(r),
            "samples_per_run": samples[v]}
        for v, r in runs.items() if r
    }  # fmt: skip
    flops = _sizes.forward_matmul_flops(arch, _sizes.model_params(size, arch), schema)
    theirs, prebuilt = rates.pop("rechub"), rates.pop("rechub_prebuilt")
    for e in rates.values():
        e["ratio"] = e["samples_per_s"] / theirs["samples_per_s"]
        e["ratio_vs_prebuilt"] = e["samples_per_s"] / prebuilt["samples_per_s"]
        e["ratio_best"] = e["samples_per_s_best"] / theirs["samples_per_s_best"]
        e["train_gflops"] = 3 * flops * e["samples_per_s"] / 1e9
    from torch.utils.flop_counter import FlopCounterMode  # the formula's cross-check

    model = make_trainer(arch, size, "default", schema, opts, 1)[1]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(table.sparse[:64], table.dense[:64])
    return {
        "size": size, "model": arch, "batch_size": opts.batch(size),
        "flops_per_sample": flops,
        "flops_per_sample_counted": counter.get_total_flops() / min(64, len(table)),
        "rechub": theirs, "rechub_prebuilt": prebuilt, "settings": rates,
        "errors": errors,
    }  # fmt: skip


def _annotate(model: torch.nn.Module) -> list[Any]:
    """Forward hooks wrapping the model and its blocks in ``fwd.<part>`` ranges."""
    handles = []
    for module in model.modules():
        part = "glue" if module is model else PARTS.get(type(module).__name__)
        if part is not None:
            stack: list[Any] = []

            def enter(_m: Any, _i: Any, part: str = part, stack: list = stack) -> None:
                stack.append(torch.profiler.record_function(f"fwd.{part}"))
                stack[-1].__enter__()

            def leave(_m: Any, _i: Any, _o: Any, stack: list = stack) -> None:
                stack.pop().__exit__(None, None, None)

            handles += [module.register_forward_pre_hook(enter)]
            handles += [module.register_forward_hook(leave)]
    return handles


def _where(event: Any) -> tuple[str, Any]:
    """(phase, model part) of a profiled op (backward: its autograd node)."""
    chain = [event]
    while chain[-1].cpu_parent is not None:
        chain.append(chain[-1].cpu_parent)
    for node in chain:
        if node.name.startswith("autograd::engine::evaluate_function"):
            return "backward", node
    if any(n.name.startswith("Optimizer.") for n in chain):
        return "optimizer", "optimizer"
    parts = [n.name[4:] for n in chain if n.name.startswith("fwd.")]
    if not parts:
        return "trainer", "loss_loader_and_trainer"
    return "forward", ([p for p in parts if p != "glue"] or ["mixing_and_glue"])[-1]


def profile_step(arch: str, data: Any, opts: Options) -> dict[str, Any]:
    """The heavy step of ``arch`` (default setting) through ``Trainer.fit``: plain
    time per step, then self CPU time by phase and model part (a backward op
    counts for the part of the forward op that created it)."""
    from torch.profiler import ProfilerActivity, profile

    schema, table, _ = data
    batch = opts.batch("heavy")
    trainer, model = make_trainer(arch, "heavy", "default", schema, opts, 1)
    rows = torch.arange(min(len(table), opts.profile_steps * batch))
    trainer.fit(table.subset(rows[: 3 * batch]))
    start = time.perf_counter()
    trainer.fit(table.subset(rows))
    step_ms = 1e3 * (time.perf_counter() - start) / -(-len(rows) // batch)
    handles = _annotate(model)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.fit(table.subset(rows[: max(2, opts.profile_steps // 2) * batch]))
    for handle in handles:
        handle.remove()
    events = [(e, *_where(e)) for e in prof.events()]
    seq_part: dict[int, str] = {}
    for e, phase, part in events:
        if e.sequence_nr >= 0 and phase in ("forward", "trainer"):
            seq_part.setdefault(e.sequence_nr, part)
    by_phase: dict[str, float] = {}
    by_part: dict[str, float] = {}
    for e, phase, part in events:
        if phase == "backward":
            grad = "AccumulateGrad" in part.name
            part = "accumulate_grad" if grad else seq_part.get(part.sequence_nr, "?")
        by_phase[phase] = by_phase.get(phase, 0.0) + e.self_cpu_time_total
        by_part[part] = by_part.get(part, 0.0) + e.self_cpu_time_total
    total = sum(by_phase.values()) or 1.0
    shares = [
        {k: round(v / total, 4) for k, v in sorted(d.items(), key=lambda kv: -kv[1])}
        for d in (by_phase, by_part)
    ]
    return {
        "model": arch, "size": "heavy", "setting": "default", "batch_size": batch,
        "step_ms": round(step_ms, 2), "by_phase_share": shares[0],
        "by_part_share": shares[1],
    }  # fmt: skip


def report(doc: dict[str, Any]) -> tuple[list[Table], dict[str, Any], list[str]]:
    """The table, the reading's figures and the notes, from the results."""
    table = Table(
        "Samples/s per mtl_reco setting against Torch-RecHub:",
        [("size / model", ""), ("setting", ""), ("batch", ",.0f"),
         ("mtl_reco samples/s", ",.0f"), ("Torch-RecHub samples/s", ",.0f"),
         ("ratio", "{:.2f}x"), ("Torch-RecHub prebuilt batches", ",.0f"),
         ("ratio vs prebuilt", "{:.2f}x"), ("mtl_reco GFLOP/s", ".1f"),
         ("share of GEMM", ".1%"), ("targets met", "")],
    )  # fmt: skip
    fastest: dict[str, list[dict[str, Any]]] = {}
    for r in doc["records"]:
        for setting, e in r["settings"].items():
            table.rows.append(
                [f"{r['size']} / {r['model']}", setting, r["batch_size"],
                 e["samples_per_s"], r["rechub"]["samples_per_s"], e["ratio"],
                 r["rechub_prebuilt"]["samples_per_s"], e["ratio_vs_prebuilt"],
                 e["train_gflops"], e["gemm_share"],
                 "yes" if e["targets_met"] else "no"]
            )  # fmt: skip
        if r["settings"]:
            best = max(r["settings"].values(), key=lambda e: e["samples_per_s"])
            fastest.setdefault(r["size"], []).append(best)
    figures = {}
    for size, entries in fastest.items():
        for key, scale, name in (("ratio", 1, "ratio"), ("gemm_share", 100, "share")):
            values = [scale * e[key] for e in entries]
            figures[f"{size}_{name}_min"] = min(values)
            figures[f"{size}_{name}_max"] = max(values)
    g, c = doc["gemm"], doc["config"]
    loaders = ", ".join(
        f"{v:,.0f} samples/s ({k})" for k, v in doc["loader_only"].items()
    )
    targets = "; ".join(
        f"{size} " + ", ".join(f"{k} >= {v:g}" for k, v in t.items())
        for size, t in TARGETS.items()
    )
    notes = [
        f"GEMM reference: {g['best_gflops']:.1f} GFLOP/s best (median "
        f"{g['median_gflops']:.1f}), float32 {g['n']}x{g['n']} matmul with "
        f"{g['threads']} thread(s), measured in the same run. {c['rows']:,} rows x "
        f"{c['epochs']} epochs x {c['repeats']} repeats per model; Torch-RecHub "
        f"{doc['rechub_version']}; its DataLoader alone: {loaders}. Targets: "
        f"{targets}.",
    ]
    for p in doc["profile"].values():
        top = ", ".join(f"{k} {v:.1%}" for k, v in list(p["by_part_share"].items())[:6])
        notes.append(f"Profile of the {p['size']} {p['model']} step ({p['setting']}, "
                     f"{p['step_ms']:.1f} ms): {top}.")  # fmt: skip
    return [table], figures, notes


def main(argv: list[str] | None = None) -> int:
    opts = harness.parse(Options, argv, __doc__ or "")
    if (version := _rechub.require()) is None:
        return 2
    result = harness.start(NAME, opts, sizes_config=SIZES)
    schema, table = _sizes.ali_ccp_like(opts.rows, opts.seed)
    data = (schema, table, _rechub.Arrays.of(table, schema))
    gemms, records, loader_only = [harness.measure_gemm(opts.gemm_n)], [], {}
    for size in opts.sizes:
        records += [bench_model(arch, size, data, opts) for arch in opts.models]
        params = SIZES[size]["models"]["mmoe"]
        hub = _rechub.ThroughputRun("mmoe", data[2], 4, params, opts.batch(size),
                                    LR, WEIGHT_DECAY, opts.seed)  # fmt: skip
        loader_only[size] = len(hub.arrays) / hub.loader_only()
        hub.close()
        gemms.append(harness.measure_gemm(opts.gemm_n))
    gemm = harness.gemm_record(gemms, opts.gemm_n)
    for r in records:
        for e in r["settings"].values():
            e["gemm_share"] = e["train_gflops"] / gemm["best_gflops"]
            e["targets_met"] = all(e[k] >= v for k, v in TARGETS[r["size"]].items())
    profiles = {}
    if opts.profile and "heavy" in opts.sizes:
        profiles = {m: profile_step(m, data, opts) for m in opts.profile_models}
    result.results = {
        "rechub_version": version, "gemm": gemm, "loader_only": loader_only,
        "records": records, "profile": profiles,
    }  # fmt: skip
    return result.finish(report, opts.results_dir)


if __name__ == "__main__":
    sys.exit(main())
