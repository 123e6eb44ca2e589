"""Training throughput: mtl_reco (per setting) vs Torch-RecHub 0.9.0, one run.

Every architecture at the light and heavy sizes of ``_sizes.py`` trains, in
one process, on the same synthetic Ali-CCP-shaped rows with the same batch,
Adam (lr 1e-3, weight decay 1e-4) and objective (mean of the task losses;
ESMM: their sum). After an untimed warm-up each variant trains ``--epochs``
epochs of ``--rows`` rows; repetitions interleave the variants (order
reversed every other one):

* mtl_reco, ``Trainer.fit`` (shuffled batches of a ``TensorTable``, fixed
  weighting, fused Adam), per setting: ``default`` (the plain model),
  ``compile`` (``TrainerConfig(compile=True)``: the trainer compiles the
  model with ``torch.compile``) and ``kernels`` (MMoE and PLE with
  ``expert_layout="manual"``, the hand-written expert kernels; the other
  models have no such option, there ``kernels`` = ``default`` and is not
  run again);
* ``rechub``: its ``MTLTrainer.train_one_epoch`` with its DataLoader;
  ``rechub_prebuilt``: its model, loss and Adam on batches built beforehand;
  its DataLoader alone once per size.

``ratio`` = mtl_reco / Torch-RecHub samples/s (medians; ``ratio_best`` from
the fastest runs). ``gemm_share`` = ``3 x forward matmul FLOPs per sample x
samples/s`` (``_sizes.forward_matmul_flops``, checked against
``FlopCounterMode``) over the best float32 GEMM GFLOP/s measured before,
between and after the sizes. Targets (never adjusted): light ratio >= 5;
heavy ratio >= 1.5 and GEMM share >= 70 %. ``--profile``: the heavy step of
``--profile-models`` (default setting) through ``Trainer.fit`` under
torch.profiler, self CPU time by phase, model part and kind of op.

    python benchmarks/train_throughput.py                 # full run
    python benchmarks/train_throughput.py --repeats 3 --threads 1
    python benchmarks/train_throughput.py --sizes heavy --models mmoe,ple
    python benchmarks/train_throughput.py --settings default,kernels
    python benchmarks/train_throughput.py --quick         # CI smoke (default, kernels)

Writes ``results/train_throughput.json`` (``--quick``: ``train_throughput_quick.json``).
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
from _sizes import ARCHS, EXPERT_MODELS, SIZES, TASKS
from harness import Table, option
from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.data import TensorTable
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.modeling.schema import FeatureSchema
from mtl_reco.modeling.trainer import Trainer
from mtl_reco.modeling.weighting.registry import build_strategy

NAME = "train_throughput"
SETTINGS = ("default", "compile", "kernels")
LR, WEIGHT_DECAY = 1e-3, 1e-4
TARGETS = {"light": {"ratio": 5.0}, "heavy": {"ratio": 1.5, "gemm_share": 0.70}}


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


def batch_of(size: str, opts: Options) -> int:
    return opts.batch_size or int(SIZES[size]["batch_size"])


def make_trainer(
    arch: str, size: str, setting: str, schema: FeatureSchema, opts: Options,
    epochs: int,
) -> tuple[Trainer, MultiTaskModel]:  # fmt: skip
    params = _sizes.model_params(size, arch)
    if setting == "kernels":
        params["expert_layout"] = "manual"
    torch.manual_seed(opts.seed)
    model = build_model(arch, schema, list(TASKS), params)
    weight = 1.0 if arch == "esmm" else 1.0 / len(TASKS)  # Torch-RecHub's objective
    strategy = build_strategy(
        "fixed", model.task_names, {"weights": dict.fromkeys(TASKS, weight)}
    )
    config = TrainerConfig.from_dict(
        {
            "device": "cpu", "epochs": epochs, "batch_size": batch_of(size, opts),
            "seed": opts.seed, "progress": False, "early_stopping": {"patience": 0},
            "optimizer": {"name": "adam", "lr": LR, "weight_decay": WEIGHT_DECAY},
            **({"compile": True} if setting == "compile" else {}),
        }
    )  # fmt: skip
    return Trainer(model, strategy, config), model


def compile_unsupported() -> str | None:
    """Why ``TrainerConfig(compile=True)`` cannot be built here (one line)."""
    try:
        TrainerConfig.from_dict({"compile": True})
    except Exception as exc:  # the field is missing in this version
        return f"TrainerConfig has no compile option: {exc}".splitlines()[0][:300]
    return None


def run_ours(arch: str, size: str, setting: str, data: Any, opts: Options) -> dict:
    """Warm up, then time ``Trainer.fit`` over ``epochs`` epochs of the table."""
    schema, table = data[0], data[1]
    trainer, _ = make_trainer(arch, size, setting, schema, opts, opts.epochs)
    warm = min(len(table), opts.warmup_batches * batch_of(size, opts))
    trainer.fit(table.subset(torch.arange(warm)))
    start = time.perf_counter()
    trainer.fit(table)
    return {"seconds": time.perf_counter() - start, "samples": opts.epochs * len(table)}


def rates(runs: list[dict[str, Any]]) -> dict[str, Any]:
    values = [r["samples"] / r["seconds"] for r in runs]
    return {
        "samples_per_s": statistics.median(values),
        "samples_per_s_best": max(values),
        "samples_per_run": runs[0]["samples"],
    }


def bench_model(arch: str, size: str, data: Any, opts: Options) -> dict[str, Any]:
    """Interleaved repetitions of every variant for one architecture and size."""
    schema, table, arrays = data
    settings = [s for s in opts.settings if s != "kernels" or arch in EXPERT_MODELS]
    variants = [*settings, "rechub", "rechub_prebuilt"]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    errors: dict[str, str] = {}
    batch = batch_of(size, opts)
    for rep in range(opts.repeats):
        hub = _rechub.ThroughputRun(
            arch, arrays, _sizes.embedding_dim(size, arch),
            SIZES[size]["models"][arch], batch, LR, WEIGHT_DECAY, opts.seed,
        )  # fmt: skip
        try:
            hub.warm_up(opts.warmup_batches)
            for variant in variants if rep % 2 == 0 else variants[::-1]:
                if variant in errors:
                    continue
                if variant == "rechub":
                    res = {"seconds": hub.train_epochs(opts.epochs)}
                elif variant == "rechub_prebuilt":
                    res = {"seconds": hub.train_prebuilt(opts.epochs)}
                else:
                    res = harness.guarded(run_ours, arch, size, variant, data, opts)
                if variant == "compile":
                    torch.compiler.reset()
                if res.get("status") == "error":
                    errors[variant] = res["error"]
                    harness.say(f"  [{size}] {arch} {variant}: {res['error']}")
                    continue
                res.setdefault("samples", opts.epochs * len(hub.arrays))
                runs[variant].append(res)
                sps = res["samples"] / res["seconds"]
                harness.say(f"  [{size}] {arch:13s} {variant:15s} {sps:>11,.0f}/s")
        finally:
            hub.close()
    params = _sizes.model_params(size, arch)
    flops = _sizes.forward_matmul_flops(arch, params, schema)
    _, model = make_trainer(arch, size, "default", schema, opts, 1)
    out: dict[str, Any] = {
        "size": size,
        "model": arch,
        "batch_size": batch,
        "flops_per_sample": flops,
        "flops_per_sample_counted": counted_flops(model, table),
        "rechub": rates(runs["rechub"]),
        "rechub_prebuilt": rates(runs["rechub_prebuilt"]),
        "settings": {s: rates(runs[s]) for s in settings if runs[s]},
        "errors": errors,
    }
    for entry in out["settings"].values():
        entry["ratio"] = entry["samples_per_s"] / out["rechub"]["samples_per_s"]
        entry["ratio_vs_prebuilt"] = (
            entry["samples_per_s"] / out["rechub_prebuilt"]["samples_per_s"]
        )
        entry["ratio_best"] = (
            entry["samples_per_s_best"] / out["rechub"]["samples_per_s_best"]
        )
        entry["train_gflops"] = 3 * flops * entry["samples_per_s"] / 1e9
    return out


def counted_flops(model: MultiTaskModel, table: TensorTable) -> float:
    """Forward FLOPs per sample measured by ``FlopCounterMode`` (the cross-check)."""
    from torch.utils.flop_counter import FlopCounterMode

    rows = min(len(table), 64)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(table.sparse[:rows], table.dense[:rows])
    return counter.get_total_flops() / rows


def add_shares(records: list[dict[str, Any]], gemm_best: float) -> None:
    for r in records:
        for entry in r["settings"].values():
            entry["gemm_share"] = entry["train_gflops"] / gemm_best
            met = [entry[k] >= v for k, v in TARGETS.get(r["size"], {}).items()]
            entry["targets_met"] = all(met)


# -- profile ------------------------------------------------------------------------
#: Model parts by module class (outermost wins); other forward ops are glue.
PARTS = {
    "FeatureEmbedding": "embedding",
    "ExpertBank": "experts",
    "SoftmaxGate": "gates",
    "Tower": "towers",
    "MLP": "mlp",
    "InformationTransfer": "information_transfer",
}
OP_KINDS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "activation": ("aten::clamp_min", "aten::relu", "aten::threshold_backward"),
    "copies": ("aten::copy_", "aten::cat", "aten::stack", "aten::clone"),
    "gather/scatter": ("aten::index_select", "aten::index_add_", "aten::scatter_add_"),
}


def _annotate(model: torch.nn.Module) -> list[Any]:
    """Forward hooks wrapping the model and its blocks in ``fwd.<part>`` ranges."""
    handles = []
    for module in model.modules():
        part = "glue" if module is model else PARTS.get(type(module).__name__)
        if part is None:
            continue
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
    """(phase, part) of a profiled op from its ancestors (backward: the node)."""
    chain, node = [], event
    while node is not None:
        chain.append(node)
        node = node.cpu_parent
    names = [n.name for n in chain]
    for n in chain:
        if n.name.startswith("autograd::engine::evaluate_function"):
            return "backward", n
    if any(n.startswith("Optimizer.") for n in names):
        return "optimizer", "optimizer"
    parts = [n[4:] for n in names if n.startswith("fwd.")]
    if parts:
        inner = [p for p in parts if p != "glue"]
        return "forward", inner[-1] if inner else "mixing_and_glue"
    return "trainer", "loss_loader_and_trainer"


def profile_step(arch: str, data: Any, opts: Options) -> dict[str, Any]:
    """Heavy training step of ``arch`` (default setting): plain time per step,
    then self CPU time by phase, model part (backward ops go to the part of
    the forward op that created them) and kind of op."""
    from torch.profiler import ProfilerActivity, profile

    schema, table = data[0], data[1]
    batch = batch_of("heavy", opts)
    trainer, model = make_trainer(arch, "heavy", "default", schema, opts, 1)
    rows = torch.arange(min(len(table), opts.profile_steps * batch))
    trainer.fit(table.subset(rows[: 3 * batch]))
    start = time.perf_counter()
    trainer.fit(table.subset(rows))
    step_ms = 1e3 * (time.perf_counter() - start) / -(-len(rows) // batch)
    handles = _annotate(model)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.fit(table.subset(rows[: max(2, opts.profile_steps // 2) * batch]))
    finally:
        for handle in handles:
            handle.remove()
    events = list(prof.events())
    where = {id(e): _where(e) for e in events}
    seq_part = {}
    for e in events:
        phase, part = where[id(e)]
        if e.sequence_nr >= 0 and phase in ("forward", "trainer"):
            seq_part.setdefault(e.sequence_nr, part)
    by_phase: dict[str, float] = {}
    by_part: dict[str, float] = {}
    by_kind: dict[str, float] = {}
    for e in events:
        phase, part = where[id(e)]
        if phase == "backward":
            grad = "AccumulateGrad" in part.name
            part = (
                "accumulate_grad"
                if grad
                else seq_part.get(part.sequence_nr, "autograd")
            )
        us = float(e.self_cpu_time_total)
        by_phase[phase] = by_phase.get(phase, 0.0) + us
        by_part[part] = by_part.get(part, 0.0) + us
        kind = next((k for k, ops in OP_KINDS.items() if e.name in ops), "other")
        by_kind[kind] = by_kind.get(kind, 0.0) + us
    total = sum(by_phase.values()) or 1.0

    def shares(d: dict[str, float]) -> dict[str, float]:
        ranked = sorted(d.items(), key=lambda kv: -kv[1])
        return {k: round(v / total, 4) for k, v in ranked}

    return {
        "model": arch,
        "size": "heavy",
        "setting": "default",
        "batch_size": batch,
        "step_ms": round(step_ms, 2),
        "by_phase_share": shares(by_phase),
        "by_part_share": shares(by_part),
        "by_op_kind_share": shares(by_kind),
    }


# -- report -------------------------------------------------------------------------
def report(doc: dict[str, Any]) -> tuple[list[Table], dict[str, Any], list[str]]:
    """Tables, reading figures and notes from the compact results."""
    table = Table(
        "Samples/s per mtl_reco setting against Torch-RecHub:",
        [("size / model", ""), ("setting", ""), ("batch", ",.0f"),
         ("mtl_reco samples/s", ",.0f"), ("Torch-RecHub samples/s", ",.0f"),
         ("ratio", "{:.2f}x"), ("Torch-RecHub prebuilt batches", ",.0f"),
         ("ratio vs prebuilt", "{:.2f}x"), ("mtl_reco GFLOP/s", ".1f"),
         ("share of GEMM", ".1%"), ("targets met", "")],
    )  # fmt: skip
    best: dict[str, list[dict[str, Any]]] = {}
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
            fastest = max(r["settings"].values(), key=lambda e: e["samples_per_s"])
            best.setdefault(r["size"], []).append(fastest)
    figures = {}
    for size, entries in best.items():
        ratios = [e["ratio"] for e in entries]
        figures |= {f"{size}_ratio_min": min(ratios), f"{size}_ratio_max": max(ratios)}
        shares = [100 * e["gemm_share"] for e in entries]
        figures |= {f"{size}_share_min": min(shares), f"{size}_share_max": max(shares)}
    g, c = doc["gemm"], doc["config"]
    notes = [
        f"GEMM reference: {g['best_gflops']:.1f} GFLOP/s best (median "
        f"{g['median_gflops']:.1f}), float32 {g['n']}x{g['n']} matmul with "
        f"{g['threads']} thread(s), measured in the same run. {c['rows']:,} rows x "
        f"{c['epochs']} epochs x {c['repeats']} repeats per model; Torch-RecHub "
        f"{doc['rechub_version']}; its DataLoader alone: "
        + ", ".join(f"{v:,.0f} samples/s ({k})" for k, v in doc["loader_only"].items())
        + ". Targets (never adjusted): light ratio >= 5x; heavy ratio >= 1.5x and "
        ">= 70 % of the GEMM figure.",
        *doc.get("setting_notes", []),
    ]
    for p in (doc.get("profile") or {}).values():
        top = ", ".join(f"{k} {v:.1%}" for k, v in list(p["by_part_share"].items())[:6])
        notes.append(
            f"Profile of the {p['size']} {p['model']} step ({p['setting']}, "
            f"{p['step_ms']:.1f} ms): {top}."
        )
    return [table], figures, notes


def main(argv: list[str] | None = None) -> int:
    opts = harness.parse(Options, argv, __doc__ or "")
    try:
        version = _rechub.rechub_version()
    except ImportError as exc:
        print(f"Torch-RecHub is not installed ({exc}); install the bench extra: "
              'pip install -e ".[bench]"', file=sys.stderr)  # fmt: skip
        return 2
    result = harness.start(NAME, opts, sizes_config=SIZES)
    setting_notes = []
    if "compile" in opts.settings and (why := compile_unsupported()):
        harness.say(f"setting compile not measured: {why}")
        setting_notes.append(f"Setting `compile` not measured: {why}.")
        opts.settings = tuple(s for s in opts.settings if s != "compile")
    schema, table = _sizes.ali_ccp_like(opts.rows, opts.seed)
    vocab = [f.cardinality for f in schema.sparse]
    arrays = _rechub.Arrays(
        table.sparse.numpy(), table.dense.numpy(), table.labels.numpy(),
        schema.sparse_names, vocab, schema.dense_names,
    )  # fmt: skip
    data = (schema, table, arrays)
    gemms = [harness.measure_gemm(opts.gemm_n)]
    records, loader_only = [], {}
    for size in opts.sizes:
        for arch in opts.models:
            records.append(bench_model(arch, size, data, opts))
        hub = _rechub.ThroughputRun(
            "mmoe", arrays, 4, SIZES[size]["models"]["mmoe"], batch_of(size, opts),
            LR, WEIGHT_DECAY, opts.seed,
        )  # fmt: skip
        loader_only[size] = len(hub.arrays) / hub.loader_only()
        hub.close()
        gemms.append(harness.measure_gemm(opts.gemm_n))
    gemm = harness.gemm_record(gemms, opts.gemm_n)
    add_shares(records, gemm["best_gflops"])
    profiles = {}
    if opts.profile and "heavy" in opts.sizes:
        profiles = {m: profile_step(m, data, opts) for m in opts.profile_models}
    doc = {
        "config": result.config,
        "rechub_version": version,
        "gemm": gemm,
        "loader_only": loader_only,
        "records": records,
        "profile": profiles,
        "setting_notes": setting_notes,
    }
    result.results = {k: v for k, v in doc.items() if k != "config"}
    result.tables, result.figures, result.notes = report(doc)
    result.write(opts.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
