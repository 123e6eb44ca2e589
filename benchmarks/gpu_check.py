"""GPU check: CUDA training, bf16, torch.compile, GPU throughput, ONNX parity.

One prepared script for a machine with one NVIDIA GPU (about 6 minutes):

1. **device** - GPU, memory, capability, driver, torch / CUDA / cuDNN
   versions and the measured bf16 / fp32 matmul TFLOP/s;
2. **agreement** - simulated rows (2 M) through labels, split and encoding
   as ``kedro run`` chains them (``_simulated.py``); every architecture with
   its experiment's parameters trains the same steps on the CPU (two seeds)
   and on the GPU in fp32 and bf16 autocast: the GPU's final training loss
   and validation AUC must match the CPU run within twice the gap between
   the two CPU seeds (at least 0.005 AUC and 1 % of the loss); NaN fails;
3. **weighting** - MMoE with every loss-weighting strategy, fp32 and bf16,
   a few dozen steps: finite losses and weights;
4. **throughput** - samples/s through ``Trainer.fit`` at the light and heavy
   sizes of ``_sizes.py`` with GPU-sized batches (2048, 16384): fp32 and
   bf16 with the table on the GPU (``TensorTable.to``) or streamed from
   pinned host memory, then bf16 ``torch.compile``d and, for heavy MMoE,
   with CUDA graphs (``mode="reduce-overhead"``); peak GPU memory. Target
   on an H200: heavy MMoE >= 5 M samples/s, bf16, table on the GPU.
   Compiled runs are skipped, and said so, past ``--budget-s``;
5. **onnx** - the GPU-trained MMoE exported with ``export_onnx``,
   onnxruntime (CPU) against PyTorch on the GPU and on the CPU.

The JSON is rewritten after every stage (a run cut short keeps what it
measured); every error is recorded (``errors``) and the check goes on. Exit
status: 0 when every check passed, 1 when one failed, 2 when the check
cannot start (no CUDA, a missing package).

It needs only what a bare GPU machine with PyTorch (>= 2.11, Python 3.11 or
3.12) carries - torch, numpy, pandas, pyarrow, onnx, onnxruntime - and the
project's pydantic pin (``make gpu-wheels`` carries its wheels); Kedro, MLflow
and scikit-learn are never imported, and ``src`` is put on ``sys.path`` when
``mtl_reco`` is not importable.

    PYTHONPATH=src python benchmarks/gpu_check.py            # on a GPU
    python benchmarks/gpu_check.py --stages device,throughput --models mmoe
    python benchmarks/gpu_check.py --quick                   # CPU smoke (CI)

``--quick`` runs every stage on the CPU at tiny sizes (autocast is then a
no-op, ``torch.compile`` uses the ``aot_eager`` backend). Writes
``results/gpu_check.json`` (``--quick``: ``gpu_check_quick.json``; ``--out``).
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
    from mtl_reco.modeling.weighting.registry import (
        available_strategies,
        build_strategy,
    )
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
#: throughput settings: name -> (bf16 autocast, table, compile mode)
SETTINGS = {
    "fp32": (False, "device", None),
    "bf16": (True, "device", None),
    "fp32_host": (False, "host", None),
    "bf16_host": (True, "host", None),
    "bf16_compiled": (True, "device", "default"),
    "bf16_cudagraphs": (True, "device", "reduce-overhead"),
}
LABELS = {
    "fp32": "fp32",
    "bf16": "bf16",
    "fp32_host": "fp32, host table",
    "bf16_host": "bf16, host table",
    "bf16_compiled": "bf16, compiled",
    "bf16_cudagraphs": "bf16, CUDA graphs",
}


@dataclass
class Options(harness.Config):
    results_dir: str = option(
        str(harness.RESULTS_DIR), "output folder", flags=["--out"]
    )
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
    repeats: int = option(2, "timed repetitions (best counts)")
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


def head(table: Any, rows: int) -> Any:
    """The first ``rows`` rows (views; extras dropped)."""
    t = table
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
        self.result.results = self.doc

    def fail(self, text: str) -> None:
        self.doc["failed"].append(text)

    def error(self, where: str, exc: BaseException) -> dict[str, Any]:
        line = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        trace = traceback.format_exception(type(exc), exc, exc.__traceback__)
        entry = {"where": where, "error": line, "traceback": "".join(trace)[-3000:]}
        self.doc["errors"].append(entry)
        self.fail(f"{where}: {line}")
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

    def left(self) -> float:
        return self.opts.budget_s - (time.monotonic() - self.start)

    def write(self, quiet: bool = True) -> Path:
        self.doc["passed"] = not self.doc["failed"]
        self.result.tables, self.result.notes = report(self.doc)
        return self.result.write(self.opts.results_dir, quiet=quiet)


# -- stages -------------------------------------------------------------------------
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
        seconds = time.perf_counter() - t0
        info["matmul"][f"{label}_tflops"] = 20 * n**3 / seconds / 1e12
    return info


@dataclass(frozen=True)
class Short:
    """A short fixed-step training run of the agreement and weighting stages."""

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
    batch = opts.agreement_batch
    trainer = Trainer(
        model,
        build_strategy(run.weighting, model.task_names),
        _simulated.trainer_config(
            params, device=run.device, amp=run.amp, epochs=1, seed=run.seed,
            drop_last=True, batch_size=batch, early_stopping={"patience": 0},
        ),
    )  # fmt: skip
    last = trainer.fit(head(data.tables["train"], steps * batch), valid).history[-1]
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

    def loss(r: Mapping) -> float:
        return float(r["train_loss"]["total"])

    def rel(a: Mapping, b: Mapping) -> float:
        return abs(loss(a) - loss(b)) / max(abs(loss(b)), 1e-12)

    noise = {"auc": abs(auc(cpu) - auc(cpu_other)), "loss_rel": rel(cpu_other, cpu)}
    d_auc, d_loss = abs(auc(dev) - auc(cpu)), rel(dev, cpu)
    tol_auc = max(2 * noise["auc"], AUC_FLOOR)
    tol_loss = max(2 * noise["loss_rel"], LOSS_FLOOR)
    return {
        "valid_mean_auc": auc(dev), "cpu_valid_mean_auc": auc(cpu),
        "abs_diff_auc": d_auc, "tolerance_auc": tol_auc,
        "train_loss": loss(dev), "cpu_train_loss": loss(cpu),
        "rel_diff_loss": d_loss, "tolerance_loss": tol_loss, "seed_noise": noise,
        "agree": bool(dev["finite"]) and d_auc <= tol_auc and d_loss <= tol_loss,
    }  # fmt: skip


def stage_agreement(check: Check, data: Any, device: torch.device) -> dict[str, Any]:
    """Every architecture on the CPU (two seeds) and on ``device`` (fp32, bf16)."""
    o = check.opts
    valid = head(data.tables["valid"], o.valid_rows)
    rule = (
        f"|device - cpu| <= max(2 x |cpu seed {o.seed} - cpu seed {o.seed + 1}|, "
        f"floor) for validation mean AUC (floor {AUC_FLOOR}) and the final training "
        f"loss (relative, floor {LOSS_FLOOR}); every loss, weight and AUC finite"
    )
    out: dict[str, Any] = {"steps": o.steps, "batch_size": o.agreement_batch}
    check.doc["agreement"] = out | {"valid_rows": len(valid), "rule": rule}
    models, kept = check.doc["agreement"].setdefault("models", {}), {}
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
            kept[arch] = model if key == "fp32" else kept.get(arch)
        for key in ("fp32", "bf16"):
            if any("error" in runs[k] for k in ("cpu", "cpu_seed2", key)):
                continue
            e = entry[key] = compare_runs(runs["cpu"], runs["cpu_seed2"], runs[key])
            if not e["agree"]:
                check.fail(f"agreement {arch} {key}: {e}")
            harness.say(
                f"  {arch:13s} {key}: AUC {e['valid_mean_auc']:.4f} vs cpu "
                f"{e['cpu_valid_mean_auc']:.4f}, loss {e['train_loss']:.4f} vs "
                f"{e['cpu_train_loss']:.4f} -> {'ok' if e['agree'] else 'DIFFERS'}"
            )
    return kept


def stage_weighting(check: Check, data: Any, device: torch.device) -> None:
    o = check.opts
    valid = head(data.tables["valid"], o.valid_rows)
    runs: dict[str, Any] = {}
    check.doc["weighting"] = {"model": "mmoe", "steps": o.weighting_steps, "runs": runs}
    for name in available_strategies():
        for amp in (False, True):
            key = f"{name}.{'bf16' if amp else 'fp32'}"
            run = Short("mmoe", str(device), amp, o.seed, name)
            try:
                runs[key], _ = train_short(run, data, o.weighting_steps, o, valid)
            except Exception as exc:  # recorded; the other strategies go on
                runs[key] = check.error(f"weighting {key}", exc)
                continue
            if not runs[key]["finite"]:
                check.fail(f"weighting {key}: non-finite {runs[key]}")
            harness.say(f"  {key:18s} loss {runs[key]['train_loss']['total']:.4f}")


def measure(
    check: Check, arch: str, size: str, setting: str, tables: Mapping, data: Any,
    device: torch.device,
) -> dict[str, Any]:  # fmt: skip
    """Warm up, then time ``Trainer.fit`` over a fixed number of batches."""
    o, batch = check.opts, check.opts.batch[size]
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
    trainer = Trainer(model, build_strategy("fixed", model.task_names), config)
    table, cuda = tables[where], device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    steps, timed = min(o.timed_steps, len(table) // batch), []
    for rep in range(-1, o.repeats):  # repetition -1: the warm-up
        sync(device)
        t0 = time.perf_counter()
        last = trainer.fit(head(table, (o.warm_steps if rep < 0 else steps) * batch))
        sync(device)
        timed.append(time.perf_counter() - t0)
    warm_s, timed = timed[0], timed[1:]
    sps = steps * batch / min(timed)
    loss = last.history[-1]["train_loss"]
    res = {
        "model": arch, "size": size, "setting": setting, "amp": amp,
        "amp_effective": amp and cuda, "table": where, "compile": mode,
        "compile_backend": o.compile_backend if mode else None, "batch_size": batch,
        "steps": steps, "warmup_s": round(warm_s, 2), "timed_s": timed,
        "samples_per_s": sps, "steps_per_s": steps / min(timed),
        "train_tflops": 3 * flops * sps / 1e12, "forward_mflop_per_sample": flops / 1e6,
        "peak_gpu_mem_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        if cuda else None,
        "final_train_loss": loss, "finite": finite(loss),
    }  # fmt: skip
    if not res["finite"]:
        check.fail(f"throughput {arch} {size} {setting}: non-finite")
    harness.say(f"  {size:5s} {arch:13s} {setting:15s} {sps:>13,.0f} samples/s")
    return res


def stage_throughput(
    check: Check, data: Any, device: torch.device, tables: Mapping, compiled: bool
) -> None:
    """The eager settings, or (``compiled``) the compiled ones, budget allowing."""
    o = check.opts
    rows = check.doc.setdefault("throughput", [])
    sizes = [s for s in ("heavy", "light") if s in o.sizes]
    eager = [s for s, (_, _, mode) in SETTINGS.items() if mode is None]
    if not compiled:
        plan = [(s, a, st) for s in sizes for a in o.models for st in eager]
    else:  # the target's case first, then the other heavy models, then light
        order = sorted(o.models, key=lambda a: a != "mmoe")
        plan = [(s, a, "bf16_compiled") for s in sizes for a in order]
        if o.cudagraphs and device.type == "cuda" and "heavy" in sizes:
            first = 1 if "mmoe" in order else 0
            plan.insert(first, ("heavy", "mmoe", "bf16_cudagraphs"))
    cost = o.compile_estimate_s
    for size, arch, setting in plan:
        key = {"model": arch, "size": size, "setting": setting}
        if compiled and check.left() < cost:
            why = f"{check.left():.0f} s left, a compiled run takes about {cost:.0f} s"
            rows.append({**key, "skipped": f"time budget: {why}"})
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
        check.fail(f"onnx parity: {check.doc['onnx']}")
    harness.say(f"  max |onnxruntime - torch| {worst:.2e}, on the CPU {worst_cpu:.2e}")


def targets(check: Check, device: torch.device) -> dict[str, Any]:
    wanted = ("mmoe", "heavy", True, "device")
    rows = [
        r
        for r in check.doc.get("throughput", [])
        if (r["model"], r["size"], r.get("amp"), r.get("table")) == wanted
        and "samples_per_s" in r
    ]
    best = max(rows, key=lambda r: r["samples_per_s"], default={})
    applies = device.type == "cuda" and check.opts.batch["heavy"] == BATCH["heavy"]
    sps = best.get("samples_per_s")
    return {
        "heavy_mmoe_bf16_device_table": {
            "target_samples_per_s": TARGET, "batch_size": check.opts.batch["heavy"],
            "best_samples_per_s": sps, "best_setting": best.get("setting"),
            "applies": applies,
            "met": None if not applies or sps is None else sps >= TARGET,
        }
    }  # fmt: skip


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
    if agreement := doc.get("agreement"):
        a = agreement
        table = Table(
            f"**CPU/GPU agreement** ({a['steps']} steps of batch {a['batch_size']}; "
            f"validation mean AUC on {a['valid_rows']:,} rows; rule: {a['rule']}):",
            [("model", ""), ("AUC CPU", ".4f"), ("AUC GPU fp32", ".4f"),
             ("AUC GPU bf16", ".4f"), ("AUC tolerance", ".4f"), ("loss CPU", ".4f"),
             ("loss GPU fp32", ".4f"), ("loss GPU bf16", ".4f"), ("agree", "")],
        )  # fmt: skip
        for arch, e in a.get("models", {}).items():
            f, b = e.get("fp32", {}), e.get("bf16", {})
            agree = "yes" if f.get("agree") and b.get("agree") else "NO"
            table.rows.append(
                [arch, f.get("cpu_valid_mean_auc"), f.get("valid_mean_auc"),
                 b.get("valid_mean_auc"), f.get("tolerance_auc"),
                 f.get("cpu_train_loss"), f.get("train_loss"), b.get("train_loss"),
                 agree]
            )  # fmt: skip
        tables.append(table)
    through = doc.get("throughput", [])
    for size in ("heavy", "light"):
        here = [r for r in through if r["size"] == size]
        shown = [s for s in SETTINGS if any(r["setting"] == s for r in here)]
        batch = next((r["batch_size"] for r in here if "batch_size" in r), None)
        columns = [(LABELS[s], "{}") for s in shown]
        table = Table(
            f"**Training samples/s, {size} size, batch {batch}:**",
            [("model", ""), *columns, ("peak GPU MiB (bf16)", ",.0f")],
        )
        for arch in dict.fromkeys(r["model"] for r in here):
            cells = {r["setting"]: r for r in here if r["model"] == arch}
            row: list[Any] = [arch]
            for s in shown:
                r = cells.get(s, {})
                sps = r.get("samples_per_s")
                status = "error" if "error" in r else r.get("skipped") and "skipped"
                row.append(f"{sps:,.0f}" if sps else status)
            table.rows.append([*row, cells.get("bf16", {}).get("peak_gpu_mem_mb")])
        if here:
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
            "**Target** heavy MMoE, bf16, table on the GPU, batch "
            f"{t['batch_size']}: {t['best_samples_per_s'] or 0:,.0f} samples/s "
            f"({t['best_setting']}) against {TARGET:,}: "
            f"{'met' if t['met'] else 'missed'}."
        )
    failed = doc.get("failed", [])
    verdict = f"{len(failed)} check(s) failed:" if failed else "All checks passed."
    notes.append("\n".join([verdict, *(f"- {line[:300]}" for line in failed)]))
    return tables, notes


def run(opts: Options, device: torch.device) -> Check:
    check = Check(opts)
    with check.stage("device"):
        check.doc["device"] = device_info(device)
        harness.say(f"  {check.doc['device']}")
    if not set(opts.stages) - {"device"}:
        return check
    with check.stage("data"):
        data = _simulated.prepare(opts.rows, opts.seed)
        splits, seconds = data.describe(), round(data.seconds, 1)
        check.doc["data"] = {"source": "simulated", "rows": opts.rows}
        check.doc["data"] |= {"splits": splits, "seconds": seconds}
    if "data" not in check.doc:
        return check
    trained: dict[str, Any] = {}
    if "agreement" in opts.stages:
        with check.stage("agreement"):
            trained = stage_agreement(check, data, device)
    if "weighting" in opts.stages:
        with check.stage("weighting"):
            stage_weighting(check, data, device)
    tables: dict[str, Any] = {}
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
                _, model = train_short(run, data, opts.steps, opts)
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
    return 1 if check.doc["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
