"""GPU check: CUDA training, bf16, torch.compile, GPU throughput, ONNX parity.

One prepared run on a machine with one NVIDIA GPU (about 6 minutes), stage
by stage: **device** (GPU, driver, versions, bf16 / fp32 matmul TFLOP/s);
**agreement** (every architecture, simulated data as ``kedro run`` prepares
it, the same steps on the CPU with two seeds and on the GPU in fp32 and bf16:
validation AUC and final loss within max(2x the CPU seed gap, 0.005 AUC, 1 %
of the loss), nothing NaN); **weighting** (MMoE with every strategy, fp32 and
bf16: finite); **throughput** (samples/s through ``Trainer.fit`` at the sizes
of ``_sizes.py``, batches 2048 / 16384: fp32 and bf16, table on the GPU or
streamed from pinned host memory, then bf16 compiled and, for heavy MMoE,
CUDA graphs; target on an H200: heavy MMoE >= 5 M samples/s, bf16, table on
the GPU; compiled runs past ``--budget-s`` are skipped and said so); **onnx**
(the GPU-trained MMoE through ONNX Runtime on the CPU against PyTorch).

The JSON is rewritten after every stage; errors are recorded and the check
goes on. Exit 0 when every check passed, 1 when one failed, 2 when it cannot
start (no CUDA, a missing package). It needs only torch (>= 2.11), numpy,
pandas, pyarrow, onnx, onnxruntime and pydantic (``make gpu-wheels``): no
Kedro, MLflow or scikit-learn; ``src`` goes on ``sys.path`` when needed.

    PYTHONPATH=src python benchmarks/gpu_check.py          # on a GPU
    python benchmarks/gpu_check.py --stages device,throughput --models mmoe
    python benchmarks/gpu_check.py --quick   # CPU smoke (CI): tiny, aot_eager

Writes ``results/gpu_check.json`` (``--quick``: ``gpu_check_quick.json``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import harness
from harness import Table, option

try:
    import mtl_reco  # noqa: F401
except ImportError:  # a plain checkout: the src layout
    sys.path.insert(0, str(harness.PROJECT_ROOT / "src"))
try:
    import _simulated
    import _sizes
    from mtl_reco.modeling.config import TrainerConfig
    from mtl_reco.modeling.device import DeviceError, resolve_device
    from mtl_reco.modeling.export import check_parity, export_onnx
    from mtl_reco.modeling.models.registry import build_model
    from mtl_reco.modeling.trainer import Trainer
    from mtl_reco.modeling.weighting import registry as weighting
except ImportError as _exc:  # a bare machine without the project's pins
    _MISSING: ImportError | None = _exc
else:
    _MISSING = None

NAME = "gpu_check"
ARCHS = ("shared_bottom", "esmm", "mmoe", "ple", "aitm")
STAGES = ("device", "agreement", "weighting", "throughput", "onnx")
BATCH, QUICK_BATCH = {"light": 2048, "heavy": 16384}, {"light": 128, "heavy": 256}
TARGET = 5_000_000  # heavy MMoE samples/s, bf16, table on the GPU (H200)
AUC_FLOOR, LOSS_FLOOR, PARITY_TOL = 0.005, 0.01, 1e-4
#: throughput settings: name -> (bf16 autocast, where the table is, compile mode)
SETTINGS = {
    "fp32": (False, "device", None), "bf16": (True, "device", None),
    "fp32_host": (False, "host", None), "bf16_host": (True, "host", None),
    "bf16_compiled": (True, "device", "default"),
    "bf16_cudagraphs": (True, "device", "reduce-overhead"),
}  # fmt: skip


@dataclass
class Options(harness.Config):
    results_dir: str = option(str(harness.RESULTS_DIR), "", flags=["--out"])
    device: str = option("cuda", "cuda[:N]", quick="cpu")
    stages: tuple[str, ...] = option(STAGES, "", choices=STAGES)
    models: tuple[str, ...] = option(ARCHS, "", choices=ARCHS)
    sizes: tuple[str, ...] = option(("light", "heavy"), "", choices=tuple(BATCH))
    rows: int = option(2_000_000, "simulated rows", quick=20_000)
    steps: int = option(200, "agreement steps", quick=4)
    agreement_batch: int = option(2048, "", quick=256)
    weighting_steps: int = option(40, "", quick=2)
    valid_rows: int = option(100_000, "", quick=2_000)
    parity_rows: int = option(16_384, "", quick=512)
    warm_steps: int = option(5, "untimed throughput steps", quick=2)
    timed_steps: int = option(100, "timed throughput steps", quick=3)
    repeats: int = option(2, "timed repetitions (the best counts)")
    compile: bool = option(True, "measure torch.compile'd training too")
    cudagraphs: bool = option(True, "heavy MMoE with reduce-overhead (CUDA)")
    compile_backend: str = option("inductor", "", quick="aot_eager")
    compile_estimate_s: float = option(40.0, "a compiled run's cost", quick=10.0)
    budget_s: float = option(330.0, "no compiled run past this", quick=600.0)
    seed: int = option(2026, "")

    @property
    def batch(self) -> dict[str, int]:
        return dict(QUICK_BATCH if self.quick else BATCH)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def head(t: Any, rows: int) -> Any:
    """The first ``rows`` rows of a table (views, extras dropped)."""
    return type(t)(t.sparse[:rows], t.dense[:rows], t.labels[:rows], t.task_names)


def finite(values: Any) -> bool:
    items = values.values() if isinstance(values, Mapping) else values
    return all(isinstance(v, int | float) and math.isfinite(v) for v in items)


class Check:
    """Results, errors and stage times; the JSON rewritten after each stage."""

    def __init__(self, opts: Options) -> None:
        self.opts, self.start = opts, time.monotonic()
        self.result = harness.start(NAME, opts, batch=opts.batch)
        self.doc: dict[str, Any] = {"errors": [], "failed": [], "stage_s": {}}
        self.result.results, self.failed = self.doc, self.doc["failed"]

    def error(self, where: str, exc: BaseException) -> dict[str, Any]:
        line = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        trace = "".join(traceback.format_exception(exc))[-3000:]
        self.doc["errors"].append({"where": where, "error": line, "traceback": trace})
        self.failed.append(f"{where}: {line}")
        harness.say(f"  ERROR in {where}: {line}")
        return {"error": line}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        harness.say(f"\n== {name} ==")
        try:
            yield
        except Exception as exc:  # a broken stage leaves the others running
            self.error(name, exc)
        finally:
            self.doc["stage_s"][name] = round(time.monotonic() - t0, 1)
            self.write()

    def write(self, quiet: bool = True) -> Path:
        self.doc["passed"] = not self.failed
        self.result.tables, self.result.notes = report(self.doc)
        return self.result.write(self.opts.results_dir, quiet=quiet)


def device_info(device: torch.device) -> dict[str, Any]:
    cuda = device.type == "cuda"
    info: dict[str, Any] = {
        "device": str(device), "python": platform.python_version(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
    }  # fmt: skip
    if cuda:
        props = torch.cuda.get_device_properties(device)
        info["name"], info["capability"] = props.name, f"{props.major}.{props.minor}"
        info["memory_gib"] = round(props.total_memory / 2**30, 1)
        info["bf16_supported"] = bool(torch.cuda.is_bf16_supported())
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
            smi = subprocess.run(query, capture_output=True, text=True, timeout=20)
            info["driver"] = smi.stdout.split()[0]
    n = 8192 if cuda else 256
    info["matmul"] = {"n": n}
    for label, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        for i in range(13):  # 3 warm-ups, 10 timed
            if i == 3:
                sync(device)
                t0 = time.perf_counter()
            a @ b
        sync(device)
        info["matmul"][f"{label}_tflops"] = (
            20 * n**3 / (time.perf_counter() - t0) / 1e12
        )
    return info


@dataclass(frozen=True)
class Short:
    """A short fixed-step training run (agreement and weighting stages)."""

    arch: str
    device: str
    amp: bool
    seed: int
    weighting: str = "fixed"


def train_short(
    run: Short, data: Any, steps: int, opts: Options, valid: Any = None
) -> tuple[dict[str, Any], Any]:
    """``steps`` batches with the project's defaults; losses, weights, AUC."""
    params = _simulated.project_parameters()
    torch.manual_seed(run.seed)
    config = _simulated.model_params(run.arch, params)
    model = build_model(run.arch, data.schema, None, config)
    config = _simulated.trainer_config(
        params, device=run.device, amp=run.amp, epochs=1, seed=run.seed,
        drop_last=True, batch_size=opts.agreement_batch, early_stopping={"patience": 0},
    )  # fmt: skip
    strategy = weighting.build_strategy(run.weighting, model.task_names)
    trainer = Trainer(model, strategy, config)
    rows = head(data.tables["train"], steps * opts.agreement_batch)
    last = trainer.fit(rows, valid).history[-1]
    out = {**asdict(run), "steps": steps, "samples_per_s": last["samples_per_s"]}
    out["amp_effective"] = run.amp and trainer.device.type == "cuda"
    out["train_loss"], out["weights"] = last["train_loss"], last["weights"]
    if valid is not None:
        out["valid_auc"] = {k: v for k, v in last["valid"].items() if ".auc" in k}
    parts = ("train_loss", "weights", "valid_auc")
    out["finite"] = all(finite(out.get(k, {})) for k in parts)
    return out, model


def compare_runs(cpu: Mapping, cpu_other: Mapping, dev: Mapping) -> dict[str, Any]:
    """``dev`` against ``cpu``, with the two CPU seeds as the noise scale."""

    def auc(r: Mapping) -> float:
        return float(r["valid_auc"]["mean.auc"])

    def rel(a: Mapping, b: Mapping) -> float:
        la, lb = float(a["train_loss"]["total"]), float(b["train_loss"]["total"])
        return abs(la - lb) / max(abs(lb), 1e-12)

    noise = {"auc": abs(auc(cpu) - auc(cpu_other)), "loss_rel": rel(cpu_other, cpu)}
    d_auc, d_loss = abs(auc(dev) - auc(cpu)), rel(dev, cpu)
    tol_auc = max(2 * noise["auc"], AUC_FLOOR)
    tol_loss = max(2 * noise["loss_rel"], LOSS_FLOOR)
    return {
        "valid_mean_auc": auc(dev), "cpu_valid_mean_auc": auc(cpu),
        "abs_diff_auc": d_auc, "tolerance_auc": tol_auc,
        "train_loss": dev["train_loss"]["total"],
        "cpu_train_loss": cpu["train_loss"]["total"],
        "rel_diff_loss": d_loss, "tolerance_loss": tol_loss, "seed_noise": noise,
        "agree": bool(dev["finite"]) and d_auc <= tol_auc and d_loss <= tol_loss,
    }  # fmt: skip


def stage_agreement(check: Check, data: Any, device: torch.device) -> dict[str, Any]:
    """Every architecture on the CPU (two seeds) and on ``device`` (fp32, bf16)."""
    o, kept = check.opts, {}
    valid = head(data.tables["valid"], o.valid_rows)
    rule = (
        f"|device - cpu| <= max(2 x |cpu seed {o.seed} - cpu seed {o.seed + 1}|, "
        f"floor) for validation mean AUC (floor {AUC_FLOOR}) and the final training "
        f"loss (relative, floor {LOSS_FLOOR}); every loss, weight and AUC finite"
    )
    models: dict[str, Any] = {}
    check.doc["agreement"] = {
        "steps": o.steps, "batch_size": o.agreement_batch, "valid_rows": len(valid),
        "rule": rule, "models": models,
    }  # fmt: skip
    for arch in o.models:
        runs: dict[str, Any] = {}
        entry = models[arch] = {"runs": runs}
        plan = {
            "cpu": Short(arch, "cpu", False, o.seed),
            "cpu_seed2": Short(arch, "cpu", False, o.seed + 1),
            "fp32": Short(arch, str(device), False, o.seed),
            "bf16": Short(arch, str(device), True, o.seed),
        }
        for key, run in plan.items():
            try:
                runs[key], model = train_short(run, data, o.steps, o, valid)
            except Exception as exc:  # recorded; the other runs go on
                runs[key] = check.error(f"agreement {arch} {key}", exc)
                continue
            if key == "fp32":
                kept[arch] = model
        for key in ("fp32", "bf16"):
            if any("error" in runs[k] for k in ("cpu", "cpu_seed2", key)):
                continue
            e = entry[key] = compare_runs(runs["cpu"], runs["cpu_seed2"], runs[key])
            if not e["agree"]:
                check.failed.append(f"agreement {arch} {key}: {e}")
            verdict = "ok" if e["agree"] else "DIFFERS"
            harness.say(f"  {arch:13s} {key}: AUC {e['valid_mean_auc']:.4f} vs cpu "
                        f"{e['cpu_valid_mean_auc']:.4f} -> {verdict}")  # fmt: skip
    return kept


def stage_weighting(check: Check, data: Any, device: torch.device) -> None:
    o, runs = check.opts, {}
    valid = head(data.tables["valid"], o.valid_rows)
    check.doc["weighting"] = {"model": "mmoe", "steps": o.weighting_steps, "runs": runs}
    for name in weighting.available_strategies():
        for amp in (False, True):
            key = f"{name}.{'bf16' if amp else 'fp32'}"
            run = Short("mmoe", str(device), amp, o.seed, name)
            try:
                runs[key], _ = train_short(run, data, o.weighting_steps, o, valid)
            except Exception as exc:  # recorded; the other strategies go on
                runs[key] = check.error(f"weighting {key}", exc)
                continue
            if not runs[key]["finite"]:
                check.failed.append(f"weighting {key}: non-finite {runs[key]}")
            harness.say(f"  {key:18s} loss {runs[key]['train_loss']['total']:.4f}")


def measure(check: Check, arch: str, size: str, setting: str, tables: Mapping,
            data: Any, device: torch.device) -> dict[str, Any]:  # fmt: skip
    """Warm up, then time ``Trainer.fit`` over a fixed number of batches."""
    o, batch, cuda = check.opts, check.opts.batch[size], device.type == "cuda"
    amp, where, mode = SETTINGS[setting]
    params = _sizes.model_params(size, arch)
    torch.manual_seed(o.seed)
    model = build_model(arch, data.schema, None, params)
    flops = _sizes.forward_matmul_flops(arch, params, data.schema)
    if mode is not None:  # modes are inductor options
        inductor = o.compile_backend == "inductor" and mode != "default"
        model.compile(backend=o.compile_backend, mode=mode if inductor else None)
    config = TrainerConfig(
        device=str(device), amp=amp, epochs=1, batch_size=batch, drop_last=True,
        seed=o.seed, progress=False, early_stopping={"patience": 0},
        optimizer={"name": "adam", "lr": 1e-3, "weight_decay": 1e-4},
    )  # fmt: skip
    strategy = weighting.build_strategy("fixed", model.task_names)
    trainer = Trainer(model, strategy, config)
    table = tables[where]
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    steps, timed = min(o.timed_steps, len(table) // batch), []
    for rep in range(-1, o.repeats):  # repetition -1: the warm-up
        sync(device)
        t0 = time.perf_counter()
        last = trainer.fit(head(table, (o.warm_steps if rep < 0 else steps) * batch))
        sync(device)
        timed.append(time.perf_counter() - t0)
    (warm_s, *timed), loss = timed, last.history[-1]["train_loss"]
    sps = steps * batch / min(timed)
    peak = round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None
    if not finite(loss):
        check.failed.append(f"throughput {arch} {size} {setting}: non-finite")
    harness.say(f"  {size:5s} {arch:13s} {setting:15s} {sps:>13,.0f} samples/s")
    return {
        "model": arch, "size": size, "setting": setting, "amp": amp,
        "amp_effective": amp and cuda, "table": where, "compile": mode,
        "compile_backend": o.compile_backend if mode else None, "batch_size": batch,
        "steps": steps, "warmup_s": round(warm_s, 2), "timed_s": timed,
        "samples_per_s": sps, "steps_per_s": steps / min(timed),
        "train_tflops": 3 * flops * sps / 1e12, "forward_mflop_per_sample": flops / 1e6,
        "peak_gpu_mem_mb": peak, "final_train_loss": loss, "finite": finite(loss),
    }  # fmt: skip


def stage_throughput(check: Check, data: Any, device: torch.device, tables: Mapping,
                     compiled: bool) -> None:  # fmt: skip
    """The eager settings, or (``compiled``) the compiled ones, budget allowing."""
    o, rows = check.opts, check.doc.setdefault("throughput", [])
    sizes = [s for s in ("heavy", "light") if s in o.sizes]
    if not compiled:
        eager = [s for s, (_, _, mode) in SETTINGS.items() if mode is None]
        plan = [(s, a, st) for s in sizes for a in o.models for st in eager]
    else:  # the target's case first, then the other heavy models, then light
        order = sorted(o.models, key=lambda a: a != "mmoe")
        plan = [(s, a, "bf16_compiled") for s in sizes for a in order]
        if o.cudagraphs and device.type == "cuda" and "heavy" in sizes:
            plan.insert(int("mmoe" in order), ("heavy", "mmoe", "bf16_cudagraphs"))
    cost = o.compile_estimate_s
    for size, arch, setting in plan:
        key = {"model": arch, "size": size, "setting": setting}
        left = o.budget_s - (time.monotonic() - check.start)
        if compiled and left < cost:
            why = f"time budget: {left:.0f} s left, a compiled run takes {cost:.0f} s"
            rows.append({**key, "skipped": why})
            harness.say(f"  {size:5s} {arch:13s} {setting:15s} skipped (time budget)")
            continue
        try:
            res = measure(check, arch, size, setting, tables, data, device)
        except Exception as exc:  # recorded; the other settings go on
            where = f"throughput {size} {arch} {setting}"
            rows.append({**key, **check.error(where, exc)})
            continue
        finally:
            if compiled:
                torch.compiler.reset()  # free the compiled graphs between models
        rows.append(res)
        if compiled:
            cost = max(cost, 1.2 * res["warmup_s"] + sum(res["timed_s"]))
        check.write()


def stage_onnx(check: Check, model: Any, data: Any) -> None:
    rows = head(data.tables["valid"], check.opts.parity_rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mmoe.onnx"
        t0 = time.perf_counter()
        description = export_onnx(model, path)
        export_s = time.perf_counter() - t0
        worst = check_parity(model, path, rows, max_rows=None)
        on_cpu = copy.deepcopy(model).to("cpu")
        worst_cpu = check_parity(on_cpu, path, rows, max_rows=None)
    ok = max(worst, worst_cpu) <= PARITY_TOL
    check.doc["onnx"] = {
        "model": "mmoe (agreement stage, fp32, trained on the device)",
        "trained_on": str(next(model.parameters()).device),
        "exporter": description["exporter"], "export_s": round(export_s, 2),
        "rows": len(rows), "max_abs_diff_vs_device_torch": worst,
        "max_abs_diff_vs_cpu_torch": worst_cpu, "tolerance": PARITY_TOL, "parity": ok,
    }  # fmt: skip
    if not ok:
        check.failed.append(f"onnx parity: {check.doc['onnx']}")
    harness.say(f"  max |onnxruntime - torch| {worst:.2e}, on the CPU {worst_cpu:.2e}")


def targets(check: Check, device: torch.device) -> dict[str, Any]:
    """Heavy MMoE, bf16, table on the device: the best samples/s vs the target."""
    wanted = ("mmoe", "heavy", True, "device")
    rows = [r for r in check.doc.get("throughput", []) if "samples_per_s" in r
            and (r["model"], r["size"], r["amp"], r["table"]) == wanted]  # fmt: skip
    best = max(rows, key=lambda r: r["samples_per_s"], default={})
    applies = device.type == "cuda" and check.opts.batch["heavy"] == BATCH["heavy"]
    sps = best.get("samples_per_s")
    return {"heavy_mmoe_bf16_device_table": {
        "target_samples_per_s": TARGET, "batch_size": check.opts.batch["heavy"],
        "best_samples_per_s": sps, "best_setting": best.get("setting"),
        "applies": applies,
        "met": None if not applies or sps is None else sps >= TARGET,
    }}  # fmt: skip


def report(doc: Mapping[str, Any]) -> tuple[list[Table], list[str]]:
    """The agreement and throughput tables; device, parity, target, verdict."""
    tables, notes = [], []
    if dev := doc.get("device"):
        mm = dev["matmul"]
        notes.append(
            f"Device: {dev.get('name', dev['device'])}, driver {dev.get('driver')}, "
            f"torch {dev['torch']}, CUDA {dev['torch_cuda']}, Python {dev['python']}; "
            f"matmul (n={mm['n']}) bf16 {mm.get('bf16_tflops', 0):.1f} TFLOP/s, "
            f"fp32 {mm.get('fp32_tflops', 0):.1f} TFLOP/s."
        )
    if a := doc.get("agreement"):
        table = Table(
            f"**CPU/GPU agreement** ({a['steps']} steps of batch {a['batch_size']}; "
            f"validation mean AUC on {a['valid_rows']:,} rows; rule: {a['rule']}):",
            [("model", ""), ("AUC CPU", ".4f"), ("AUC GPU fp32", ".4f"),
             ("AUC GPU bf16", ".4f"), ("AUC tolerance", ".4f"), ("loss CPU", ".4f"),
             ("loss GPU fp32", ".4f"), ("loss GPU bf16", ".4f"), ("agree", "")],
        )  # fmt: skip
        for arch, e in a["models"].items():
            f, b = e.get("fp32", {}), e.get("bf16", {})
            agree = "yes" if f.get("agree") and b.get("agree") else "NO"
            keys = ("cpu_valid_mean_auc", "valid_mean_auc", "tolerance_auc",
                    "cpu_train_loss", "train_loss")  # fmt: skip
            cpu_auc, f_auc, tol, cpu_loss, f_loss = map(f.get, keys)
            b_auc, b_loss = b.get("valid_mean_auc"), b.get("train_loss")
            row = [arch, cpu_auc, f_auc, b_auc, tol, cpu_loss, f_loss, b_loss, agree]
            table.rows.append(row)
        tables.append(table)
    through = doc.get("throughput") or []
    for size in dict.fromkeys(r["size"] for r in through):
        rows = [r for r in through if r["size"] == size]
        batch = max((r.get("batch_size") or 0 for r in rows), default=0)
        table = Table(
            f"**Training samples/s**, {size}, batch {batch:,} (best of the timed "
            "repetitions; host: the table streamed from host memory):",
            [("model", ""), *((s.replace("_", ", "), ",.0f") for s in SETTINGS),
             ("peak GPU MiB", ",.0f")],
        )  # fmt: skip
        for arch in dict.fromkeys(r["model"] for r in rows):
            mine = {r["setting"]: r for r in rows if r["model"] == arch}
            sps = [mine.get(s, {}).get("samples_per_s") for s in SETTINGS]
            peaks = [r["peak_gpu_mem_mb"] for r in mine.values()
                     if r.get("peak_gpu_mem_mb") is not None]  # fmt: skip
            table.rows.append([arch, *sps, max(peaks, default=None)])
            for setting, r in mine.items():
                if why := r.get("error") or r.get("skipped"):
                    notes.append(f"{size} {arch} {setting}: {why}")
        tables.append(table)
    if onnx := doc.get("onnx"):
        notes.append(
            f"**ONNX parity** ({onnx['model']}, {onnx['exporter']} exporter, "
            f"{onnx['rows']:,} rows): max |onnxruntime (CPU) - PyTorch on "
            f"{onnx['trained_on']}| = {onnx['max_abs_diff_vs_device_torch']:.1e}, vs "
            f"PyTorch on the CPU {onnx['max_abs_diff_vs_cpu_torch']:.1e} (tolerance "
            f"{onnx['tolerance']:.1e})."
        )
    t = doc.get("targets", {}).get("heavy_mmoe_bf16_device_table", {})
    if t.get("applies"):
        notes.append(
            f"**Target** heavy MMoE, bf16, table on the GPU, batch {t['batch_size']}: "
            f"{t['best_samples_per_s'] or 0:,.0f} samples/s ({t['best_setting']}) "
            f"against {TARGET:,}: {'met' if t['met'] else 'missed'}."
        )
    failed = doc.get("failed", [])
    verdict = f"{len(failed)} check(s) failed:" if failed else "All checks passed."
    notes.append("\n".join([verdict, *(f"- {line[:300]}" for line in failed)]))
    return tables, notes


def run(opts: Options, device: torch.device) -> Check:
    check, trained, tables = Check(opts), {}, {}
    with check.stage("device"):
        check.doc["device"] = device_info(device)
        harness.say(f"  {check.doc['device']}")
    if not set(opts.stages) - {"device"}:
        return check
    with check.stage("data"):
        data = _simulated.prepare(opts.rows, opts.seed)
        check.doc["data"] = {
            "source": "simulated", "rows": opts.rows, "splits": data.describe(),
            "seconds": round(data.seconds, 1),
        }  # fmt: skip
    if "data" not in check.doc:
        return check
    if "agreement" in opts.stages:
        with check.stage("agreement"):
            trained = stage_agreement(check, data, device)
    if "weighting" in opts.stages:
        with check.stage("weighting"):
            stage_weighting(check, data, device)
    if "throughput" in opts.stages:
        with check.stage("throughput"):
            host = data.tables["train"]
            tables = {"host": head(host, len(host)), "device": host.to(device)}
            stage_throughput(check, data, device, tables, compiled=False)
    if "onnx" in opts.stages:
        with check.stage("onnx"):
            model = trained.get("mmoe")
            if model is None:
                run = Short("mmoe", str(device), False, opts.seed)
                model = train_short(run, data, opts.steps, opts)[1]
            stage_onnx(check, model, data)
    if "throughput" in opts.stages and opts.compile:
        with check.stage("throughput_compiled"):
            stage_throughput(check, data, device, tables, compiled=True)
    check.doc["targets"] = targets(check, device)
    return check


def main(argv: list[str] | None = None) -> int:
    opts = harness.parse(Options, argv, __doc__ or "")
    if _MISSING is not None:
        hint = (
            " (the project's configuration is pydantic: on a machine without a "
            "package registry, carry its wheels, see the GPU section of "
            "benchmarks/README.md)"
            if "pydantic" in str(getattr(_MISSING, "name", "") or "")
            else ""
        )
        print(
            f"gpu_check: cannot import the project: {_MISSING}{hint}", file=sys.stderr
        )
        return 2
    try:
        device = resolve_device(opts.device)
    except DeviceError as exc:
        hint = "" if opts.quick else " (--quick runs the check on the CPU)"
        print(f"gpu_check: {exc}{hint}", file=sys.stderr)
        return 2
    harness.say(f"{NAME}: device {device}, stages {','.join(opts.stages)}")
    check = run(opts, device)
    check.write(quiet=False)
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
