"""GPU check: CUDA training, bf16, torch.compile, GPU throughput, ONNX parity.

One prepared script for a machine with one NVIDIA GPU, in about 6 minutes:

1. **device** - GPU name, memory, compute capability, driver, torch, CUDA and
   cuDNN versions, and the GPU's measured bf16 / fp32 matrix-multiply speed
   (the scale for the throughput figures);
2. **agreement** - the project's simulator (2 M rows by default) chained
   through labels, split and encoding exactly like ``kedro run``
   (``_simulated.prepare``); every architecture with its default experiment
   parameters trains the same fixed number of steps on the CPU and on the
   GPU in fp32 and with bf16 autocast. The final training loss and the
   validation AUC on the GPU must agree with the CPU run within noise: the
   tolerance is twice the gap between two CPU runs with different seeds,
   at least 0.005 AUC and 1 % of the loss. NaN anywhere fails;
3. **weighting** - MMoE with every loss-weighting strategy, fp32 and bf16,
   a few dozen steps on the GPU: finite losses and weights;
4. **throughput** - training samples/s of every architecture at the light
   and heavy sizes of ``train_throughput.py`` with GPU-sized batches (2048
   and 16384): fp32 and bf16, with the table held on the GPU
   (``TensorTable.to``) and streamed from host memory (pinned, non-blocking
   copies), then ``torch.compile``d (bf16, table on the GPU) and, for heavy
   MMoE, compiled with CUDA graphs (``mode="reduce-overhead"``); peak GPU
   memory of each. All through the real ``Trainer.fit`` path (fixed
   weighting, fused Adam). Target on an H200: heavy MMoE >= 5 M samples/s
   at batch 16384 with bf16 and the table on the GPU;
5. **onnx** - the GPU-trained MMoE exported with ``export_onnx`` and
   scored by onnxruntime on the CPU against PyTorch on the GPU (and the
   same weights on the CPU): max |difference| of the probabilities;
6. one JSON under ``--out`` (``gpu_check.json``; ``--quick``:
   ``gpu_check_quick.json``), rewritten after every stage so that a run cut
   short still leaves what it measured, and a short table on stdout.

It needs only what a bare GPU machine with PyTorch carries - torch, numpy,
pandas, pyarrow, onnx, onnxruntime (onnxscript for the dynamo exporter,
pyyaml, tqdm) - and the project's own pydantic pin; no Kedro, no install
step: ``src`` is put on ``sys.path`` when ``mtl_reco`` is not importable.
Where pydantic is missing, carry its wheels (``make gpu-wheels``, see
``benchmarks/README.md``). Works with Python 3.11-3.13 and PyTorch >= 2.11.

Every measurement is guarded: an error is recorded in the JSON (``errors``)
and the check goes on; compiled runs are skipped, and said so, when the time
budget (``--budget-s``) would be exceeded. Exit status: 0 when every check
passed, 1 when one failed or errored (the JSON says which), 2 when the check
cannot start (no CUDA, a missing package).

    PYTHONPATH=src python benchmarks/gpu_check.py            # on a GPU, ~6 min
    python benchmarks/gpu_check.py --quick                   # CPU smoke (CI)
    python benchmarks/gpu_check.py --stages device,throughput --models mmoe

``--quick`` runs every stage on the CPU at tiny sizes (the "GPU" is the CPU,
autocast is then a no-op and said so, ``torch.compile`` uses the
``aot_eager`` backend: it traces and differentiates the models like
inductor does, without generating C++), so the script is known to work
before it meets a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import _common

NAME = "gpu_check"
ARCHS = ("shared_bottom", "esmm", "mmoe", "ple", "aitm")
STAGES = ("device", "agreement", "weighting", "throughput", "onnx")
#: GPU-sized batches for the two size classes of ``train_throughput.py``.
BATCH = {"light": 2048, "heavy": 16384}
QUICK_BATCH = {"light": 128, "heavy": 256}
TARGET_SAMPLES_PER_S = 5_000_000  # heavy MMoE, bf16, table on the GPU (H200)
AUC_FLOOR = 0.005  # smallest AUC tolerance of the agreement check
LOSS_FLOOR = 0.01  # smallest relative loss tolerance
PARITY_TOL = 1e-4  # max |torch - onnxruntime| of a probability


def _import_project() -> None:
    """Make ``mtl_reco`` importable from a plain checkout (``src`` layout)."""
    try:
        import mtl_reco  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(_common.PROJECT_ROOT / "src"))


_import_project()
try:
    import _simulated
    import train_throughput as _tt
    from mtl_reco.modeling.config import TrainerConfig
    from mtl_reco.modeling.data import TensorTable
    from mtl_reco.modeling.device import DeviceError, resolve_device
    from mtl_reco.modeling.export import check_parity, export_onnx
    from mtl_reco.modeling.models.base import MultiTaskModel
    from mtl_reco.modeling.models.registry import build_model
    from mtl_reco.modeling.trainer import Trainer, TrainResult
    from mtl_reco.modeling.weighting.registry import (
        available_strategies,
        build_strategy,
    )
except ImportError as _exc:  # a bare machine without the project's pins
    _MISSING: ImportError | None = _exc
else:
    _MISSING = None


# -- small helpers -------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def head(table: TensorTable, rows: int) -> TensorTable:
    """The first ``rows`` rows (views, no copy; extras dropped)."""
    return TensorTable(
        sparse=table.sparse[:rows],
        dense=table.dense[:rows],
        labels=table.labels[:rows],
        task_names=table.task_names,
    )


def finite(values: Sequence[float] | Mapping[str, float]) -> bool:
    items = values.values() if isinstance(values, Mapping) else values
    return all(isinstance(v, int | float) and math.isfinite(v) for v in items)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


class Check:
    """Collects results, errors and stage times; writes the JSON after each stage."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.start = time.monotonic()
        self.payload: dict[str, Any] = {
            "config": vars(args).copy(),
            "machine": _common.machine_info(),
            "errors": [],
        }
        self.payload["config"]["stages"] = list(args.stages)
        self.stage_s: dict[str, float] = {}
        self.failed: list[str] = []

    def remaining(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.start)

    def error(self, where: str, exc: BaseException) -> dict[str, Any]:
        """Record ``exc`` (one line plus the last frames) and count it as a failure."""
        line = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
        entry = {"where": where, "error": line, "traceback": "".join(frames)[-3000:]}
        self.payload["errors"].append(entry)
        self.failed.append(f"{where}: {line}")
        print(f"  ERROR in {where}: {line}", flush=True)
        return {"error": line}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        print(f"\n== {name} ==", flush=True)
        try:
            yield
        except Exception as exc:  # a stage that breaks leaves the others running
            self.error(name, exc)
        finally:
            self.stage_s[name] = round(time.monotonic() - t0, 1)
            self.write()

    def write(self) -> Path:
        self.payload["stage_s"] = self.stage_s
        self.payload["wall_s"] = round(time.monotonic() - self.start, 1)
        self.payload["failed"] = self.failed
        self.payload["passed"] = not self.failed
        self.payload["peak_rss_mb"] = _common.peak_rss_mb()
        return _common.write_result(self.args.name, self.payload, Path(self.args.out))


# -- 1. device -----------------------------------------------------------------------
def _nvidia_smi() -> dict[str, str] | None:
    query = "name,driver_version,memory.total,clocks.max.sm,power.limit"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.splitlines()[0] if out else ""
    return dict(
        zip(query.split(","), (v.strip() for v in first.split(",")), strict=False)
    )


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
            nvidia_smi=_nvidia_smi(),
        )
        smi = info["nvidia_smi"] or {}
        info["driver"] = smi.get("driver_version")
    return info


def matmul_tflops(
    device: torch.device, dtype: torch.dtype, n: int, repeats: int = 10
) -> float:
    """Mean TFLOP/s of ``repeats`` square ``n x n`` products after 3 warm-ups."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2.0 * n**3 * repeats / (time.perf_counter() - t0) / 1e12


# -- 2. agreement --------------------------------------------------------------------
@dataclass(frozen=True)
class Short:
    """A short, fixed-step training run."""

    arch: str
    device: str
    amp: bool
    seed: int
    weighting: str = "fixed"


def train_short(
    run: Short,
    data: _simulated.FunnelData,
    steps: int,
    batch_size: int,
    valid: TensorTable | None,
    params: Mapping[str, Any],
) -> tuple[dict[str, Any], MultiTaskModel]:
    """Train ``steps`` batches with the project's defaults; losses, AUC, speed."""
    torch.manual_seed(run.seed)
    model = build_model(
        run.arch, data.schema, None, _simulated.model_params(run.arch, dict(params))
    )
    config = _simulated.trainer_config(
        dict(params),
        device=run.device,
        amp=run.amp,
        epochs=1,
        seed=run.seed,
        batch_size=batch_size,
        drop_last=True,
        eval_batch_size=16384,
        early_stopping={"patience": 0},
    )
    strategy = build_strategy(run.weighting, model.task_names)
    trainer = Trainer(model, strategy, config)
    t0 = time.perf_counter()
    result = trainer.fit(head(data.tables["train"], steps * batch_size), valid)
    seconds = time.perf_counter() - t0
    record = result.history[-1]
    out: dict[str, Any] = {
        "device": run.device,
        "amp": run.amp,
        "amp_effective": run.amp and trainer.device.type == "cuda",
        "seed": run.seed,
        "weighting": run.weighting,
        "steps": steps,
        "batch_size": batch_size,
        "train_loss": record["train_loss"],
        "weights": record["weights"],
        "samples_per_s": record["samples_per_s"],
        "seconds": round(seconds, 2),
    }
    if valid is not None:
        out["valid_auc"] = {
            k: v for k, v in record["valid"].items() if k.endswith(".auc")
        }
        out["valid_loss"] = record["valid"]["loss"]
    out["finite"] = finite(out["train_loss"]) and finite(out["weights"])
    if valid is not None:
        out["finite"] = out["finite"] and finite(out["valid_auc"])
    return out, model


def compare_runs(
    cpu: Mapping[str, Any], cpu_other_seed: Mapping[str, Any], dev: Mapping[str, Any]
) -> dict[str, Any]:
    """``dev`` against ``cpu``, with the two CPU seeds as the noise scale."""
    auc = "mean.auc"
    loss = "total"

    def rel(a: float, b: float) -> float:
        return abs(a - b) / max(abs(b), 1e-12)

    noise_auc = abs(cpu["valid_auc"][auc] - cpu_other_seed["valid_auc"][auc])
    noise_loss = rel(cpu_other_seed["train_loss"][loss], cpu["train_loss"][loss])
    d_auc = abs(dev["valid_auc"][auc] - cpu["valid_auc"][auc])
    d_loss = rel(dev["train_loss"][loss], cpu["train_loss"][loss])
    tol_auc = max(2 * noise_auc, AUC_FLOOR)
    tol_loss = max(2 * noise_loss, LOSS_FLOOR)
    ok = bool(dev["finite"]) and d_auc <= tol_auc and d_loss <= tol_loss
    return {
        "valid_mean_auc": dev["valid_auc"][auc],
        "cpu_valid_mean_auc": cpu["valid_auc"][auc],
        "abs_diff_auc": d_auc,
        "tolerance_auc": tol_auc,
        "train_loss": dev["train_loss"][loss],
        "cpu_train_loss": cpu["train_loss"][loss],
        "rel_diff_loss": d_loss,
        "tolerance_loss": tol_loss,
        "seed_noise": {"auc": noise_auc, "loss_rel": noise_loss},
        "agree": ok,
    }


def stage_agreement(
    check: Check, data: _simulated.FunnelData, device: torch.device
) -> dict[str, MultiTaskModel]:
    """Every architecture on the CPU (two seeds) and on ``device`` (fp32, bf16)."""
    args = check.args
    params = _simulated.project_parameters()
    valid = head(data.tables["valid"], args.valid_rows)
    out: dict[str, Any] = {
        "steps": args.steps,
        "batch_size": args.agreement_batch,
        "valid_rows": len(valid),
        "rule": (
            f"|device - cpu| <= max(2 x |cpu seed {args.seed} - cpu seed "
            f"{args.seed + 1}|, floor) for validation mean AUC (floor {AUC_FLOOR}) "
            f"and the final training loss (relative, floor {LOSS_FLOOR}); "
            "every loss, weight and AUC finite"
        ),
        "models": {},
    }
    check.payload["agreement"] = out
    kept: dict[str, MultiTaskModel] = {}
    for arch in args.models:
        runs: dict[str, Any] = {}
        entry: dict[str, Any] = {"runs": runs}
        out["models"][arch] = entry
        plan = {
            "cpu": Short(arch, "cpu", False, args.seed),
            "cpu_seed2": Short(arch, "cpu", False, args.seed + 1),
            "fp32": Short(arch, str(device), False, args.seed),
            "bf16": Short(arch, str(device), True, args.seed),
        }
        for key, run in plan.items():
            try:
                runs[key], model = train_short(
                    run, data, args.steps, args.agreement_batch, valid, params
                )
            except Exception as exc:  # recorded; the other runs go on
                runs[key] = check.error(f"agreement {arch} {key}", exc)
                continue
            if key == "fp32":
                kept[arch] = model
        if all("error" not in runs[k] for k in ("cpu", "cpu_seed2")):
            for key in ("fp32", "bf16"):
                if "error" in runs[key]:
                    continue
                entry[key] = compare_runs(runs["cpu"], runs["cpu_seed2"], runs[key])
                if not entry[key]["agree"]:
                    check.failed.append(f"agreement {arch} {key}: {entry[key]}")
        for key in ("fp32", "bf16"):
            if key in entry:
                e = entry[key]
                print(
                    f"  {arch:13s} {key}: AUC {e['valid_mean_auc']:.4f} vs cpu "
                    f"{e['cpu_valid_mean_auc']:.4f} (|d| {e['abs_diff_auc']:.4f} <= "
                    f"{e['tolerance_auc']:.4f}?), loss {e['train_loss']:.4f} vs "
                    f"{e['cpu_train_loss']:.4f} -> {'ok' if e['agree'] else 'DIFFERS'}",
                    flush=True,
                )
    return kept


# -- 3. weighting --------------------------------------------------------------------
def stage_weighting(
    check: Check, data: _simulated.FunnelData, device: torch.device
) -> None:
    args = check.args
    params = _simulated.project_parameters()
    valid = head(data.tables["valid"], args.valid_rows)
    out: dict[str, Any] = {"model": "mmoe", "steps": args.weighting_steps, "runs": {}}
    check.payload["weighting"] = out
    for name in available_strategies():
        for amp in (False, True):
            key = f"{name}.{'bf16' if amp else 'fp32'}"
            run = Short("mmoe", str(device), amp, args.seed, weighting=name)
            try:
                res, _ = train_short(
                    run, data, args.weighting_steps, args.agreement_batch, valid, params
                )
            except Exception as exc:  # recorded; the other strategies go on
                out["runs"][key] = check.error(f"weighting {key}", exc)
                continue
            out["runs"][key] = res
            if not res["finite"]:
                check.failed.append(f"weighting {key}: non-finite {res}")
            print(
                f"  {key:18s} loss {res['train_loss']['total']:.4f}, AUC "
                f"{res['valid_auc']['mean.auc']:.4f}, {res['samples_per_s']:,.0f} "
                f"samples/s{'' if res['finite'] else ' NON-FINITE'}",
                flush=True,
            )


# -- 4. throughput -------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """How one throughput measurement trains."""

    name: str
    amp: bool
    table: str  # "device" | "host"
    compile_mode: str | None = None  # None: eager


EAGER = (
    Setting("fp32", False, "device"),
    Setting("bf16", True, "device"),
    Setting("fp32_host", False, "host"),
    Setting("bf16_host", True, "host"),
)
COMPILED = Setting("bf16_compiled", True, "device", "default")
CUDAGRAPHS = Setting("bf16_cudagraphs", True, "device", "reduce-overhead")


def _throughput_model(
    arch: str, size: str, data: _simulated.FunnelData, seed: int
) -> MultiTaskModel:
    spec = _tt.SIZES[size]
    torch.manual_seed(seed)
    params = {**spec.models[arch], "embedding_dim": spec.embedding_for(arch)}
    return build_model(arch, data.schema, None, params)


def measure(
    check: Check,
    arch: str,
    size: str,
    setting: Setting,
    tables: Mapping[str, TensorTable],
    data: _simulated.FunnelData,
    device: torch.device,
) -> dict[str, Any]:
    """Warm up, then time ``Trainer.fit`` over a fixed number of batches."""
    args = check.args
    batch = args.batch[size]
    model = _throughput_model(arch, size, data, args.seed)
    flops = _tt.forward_matmul_flops(arch, model)
    if setting.compile_mode is not None:
        mode = None if setting.compile_mode == "default" else setting.compile_mode
        if args.compile_backend != "inductor":
            mode = None  # modes are inductor options
        model.compile(backend=args.compile_backend, mode=mode)
    config = TrainerConfig(
        device=str(device),
        amp=setting.amp,
        epochs=1,
        batch_size=batch,
        drop_last=True,
        seed=args.seed,
        progress=False,
        optimizer={"name": "adam", "lr": _tt.LR, "weight_decay": _tt.WEIGHT_DECAY},
        early_stopping={"patience": 0},
    )
    trainer = Trainer(model, build_strategy("fixed", model.task_names), config)
    table = tables[setting.table]
    _peak_reset(device)
    sync(device)
    t0 = time.perf_counter()
    trainer.fit(head(table, args.warm_steps * batch))
    sync(device)
    warm_s = time.perf_counter() - t0
    steps = min(args.timed_steps, len(table) // batch)
    timed: list[float] = []
    last: TrainResult | None = None
    for _ in range(args.repeats):
        sync(device)
        t0 = time.perf_counter()
        last = trainer.fit(head(table, steps * batch))
        sync(device)
        timed.append(time.perf_counter() - t0)
    assert last is not None
    loss = last.history[-1]["train_loss"]
    best = min(timed)
    sps = steps * batch / best
    res = {
        "model": arch,
        "size": size,
        "setting": setting.name,
        "amp": setting.amp,
        "amp_effective": setting.amp and device.type == "cuda",
        "table": setting.table,
        "compile": setting.compile_mode,
        "compile_backend": args.compile_backend if setting.compile_mode else None,
        "batch_size": batch,
        "steps": steps,
        "warmup_s": round(warm_s, 2),
        "timed_s": timed,
        "samples_per_s": sps,
        "steps_per_s": steps / best,
        "train_tflops": 3 * flops * sps / 1e12,
        "forward_mflop_per_sample": flops / 1e6,
        "peak_gpu_mem_mb": _peak_mb(device),
        "final_train_loss": loss,
        "finite": finite(loss),
    }
    if not res["finite"]:
        check.failed.append(f"throughput {arch} {size} {setting.name}: non-finite")
    peak = res["peak_gpu_mem_mb"]
    print(
        f"  {size:5s} {arch:13s} {setting.name:15s} batch {batch:6d}: "
        f"{sps:>13,.0f} samples/s ({res['train_tflops']:.2f} TFLOP/s"
        f"{'' if peak is None else f', peak {peak:.0f} MiB'}, warm-up {warm_s:.1f} s)",
        flush=True,
    )
    return res


def stage_throughput(
    check: Check,
    data: _simulated.FunnelData,
    device: torch.device,
    tables: Mapping[str, TensorTable],
    compiled: bool,
) -> None:
    """Eager settings (``compiled=False``) or the compiled ones, budget allowing."""
    args = check.args
    rows = check.payload.setdefault("throughput", [])
    sizes = [s for s in ("heavy", "light") if s in args.sizes]
    if not compiled:
        plan = [(s, a, st) for s in sizes for a in args.models for st in EAGER]
    else:
        # the target's case first, then the other heavy models, then light
        order = sorted(args.models, key=lambda a: a != "mmoe")
        plan = [(s, a, COMPILED) for s in sizes for a in order]
        if args.cudagraphs and device.type == "cuda" and "heavy" in sizes:
            plan.insert(1 if "mmoe" in order else 0, ("heavy", "mmoe", CUDAGRAPHS))
    compile_cost = float(args.compile_estimate_s)
    for size, arch, setting in plan:
        if setting.compile_mode is not None and check.remaining() < compile_cost:
            rows.append(
                {
                    "model": arch,
                    "size": size,
                    "setting": setting.name,
                    "skipped": f"time budget: {check.remaining():.0f} s left, a "
                    f"compiled run takes about {compile_cost:.0f} s",
                }
            )
            print(f"  {size:5s} {arch:13s} {setting.name:15s} skipped (time budget)")
            continue
        try:
            res = measure(check, arch, size, setting, tables, data, device)
        except Exception as exc:  # recorded; the other settings go on
            err = check.error(f"throughput {size} {arch} {setting.name}", exc)
            rows.append({"model": arch, "size": size, "setting": setting.name, **err})
            continue
        finally:
            if setting.compile_mode is not None:
                torch.compiler.reset()  # free the compiled graphs between models
        rows.append(res)
        if setting.compile_mode is not None:
            compile_cost = max(
                compile_cost, 1.2 * res["warmup_s"] + sum(res["timed_s"])
            )
        check.write()


def targets(check: Check, device: torch.device) -> dict[str, Any]:
    rows = [
        r
        for r in check.payload.get("throughput", [])
        if r.get("model") == "mmoe"
        and r.get("size") == "heavy"
        and r.get("amp")
        and r.get("table") == "device"
        and "samples_per_s" in r
    ]
    best = max(rows, key=lambda r: r["samples_per_s"], default=None)
    applies = device.type == "cuda" and check.args.batch["heavy"] == BATCH["heavy"]
    return {
        "heavy_mmoe_bf16_device_table": {
            "target_samples_per_s": TARGET_SAMPLES_PER_S,
            "batch_size": check.args.batch["heavy"],
            "best_samples_per_s": None if best is None else best["samples_per_s"],
            "best_setting": None if best is None else best["setting"],
            "applies": applies,
            "met": None
            if not applies or best is None
            else best["samples_per_s"] >= TARGET_SAMPLES_PER_S,
        }
    }


# -- 5. onnx -------------------------------------------------------------------------
def stage_onnx(
    check: Check,
    model: MultiTaskModel,
    data: _simulated.FunnelData,
    device: torch.device,
) -> None:
    rows = head(data.tables["valid"], check.args.parity_rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mmoe.onnx"
        t0 = time.perf_counter()
        description = export_onnx(model, path)
        export_s = time.perf_counter() - t0
        worst_device = check_parity(model, path, rows, max_rows=None)
        on_cpu = copy.deepcopy(model).to("cpu")
        worst_cpu = check_parity(on_cpu, path, rows, max_rows=None)
        size_kb = path.stat().st_size / 1024
    ok = worst_device <= PARITY_TOL and worst_cpu <= PARITY_TOL
    check.payload["onnx"] = {
        "model": "mmoe (agreement stage, fp32, trained on the device)",
        "trained_on": str(next(model.parameters()).device),
        "exporter": description["exporter"],
        "export_s": round(export_s, 2),
        "file_kb": round(size_kb, 1),
        "rows": len(rows),
        "max_abs_diff_vs_device_torch": worst_device,
        "max_abs_diff_vs_cpu_torch": worst_cpu,
        "tolerance": PARITY_TOL,
        "parity": ok,
    }
    if not ok:
        check.failed.append(f"onnx parity: {check.payload['onnx']}")
    print(
        f"  exported with {description['exporter']} in {export_s:.1f} s; "
        f"max |onnxruntime - torch on {device}| = {worst_device:.2e}, "
        f"vs torch on cpu {worst_cpu:.2e} -> {'ok' if ok else 'FAILED'}",
        flush=True,
    )


# -- summary -------------------------------------------------------------------------
def print_summary(check: Check) -> None:
    rows = [r for r in check.payload.get("throughput", []) if "samples_per_s" in r]
    if rows:
        settings = list(dict.fromkeys(r["setting"] for r in rows))
        print("\nsamples/s (best of the timed repetitions)")
        print(f"{'size':5s} {'model':13s} " + " ".join(f"{s:>15s}" for s in settings))
        keys = list(dict.fromkeys((r["size"], r["model"]) for r in rows))
        for size, arch in keys:
            cells = []
            for s in settings:
                hit = [
                    r
                    for r in rows
                    if (r["size"], r["model"], r["setting"]) == (size, arch, s)
                ]
                cells.append(f"{hit[0]['samples_per_s']:>15,.0f}" if hit else " " * 15)
            print(f"{size:5s} {arch:13s} " + " ".join(cells))
    tgt = check.payload.get("targets", {}).get("heavy_mmoe_bf16_device_table")
    if tgt and tgt["best_samples_per_s"] is not None:
        verdict = (
            "met"
            if tgt["met"]
            else "missed"
            if tgt["met"] is False
            else "not applicable here"
        )
        print(
            f"\ntarget heavy MMoE bf16, table on the device, batch "
            f"{tgt['batch_size']}: {tgt['best_samples_per_s']:,.0f} samples/s "
            f"({tgt['best_setting']}) vs {tgt['target_samples_per_s']:,} -> {verdict}"
        )
    status = "PASSED" if not check.failed else f"FAILED ({len(check.failed)})"
    print(f"\ngpu_check {status}; {check.payload['wall_s']:.0f} s")
    for line in check.failed:
        print(f"  - {line[:300]}")


# -- driver --------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU smoke run (CI)")
    parser.add_argument("--device", default=None, help="cuda[:N] (quick: cpu)")
    parser.add_argument("--stages", default=",".join(STAGES), help=",".join(STAGES))
    parser.add_argument("--models", default=",".join(ARCHS), help=",".join(ARCHS))
    parser.add_argument("--sizes", default="light,heavy", help="light,heavy")
    parser.add_argument("--rows", type=int, default=None, help="simulated rows")
    parser.add_argument("--steps", type=int, default=None, help="agreement steps")
    parser.add_argument("--agreement-batch", type=int, default=None)
    parser.add_argument("--weighting-steps", type=int, default=None)
    parser.add_argument("--valid-rows", type=int, default=None)
    parser.add_argument("--parity-rows", type=int, default=None)
    parser.add_argument("--warm-steps", type=int, default=None)
    parser.add_argument("--timed-steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2, help="timed repetitions")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure torch.compile'd training too",
    )
    parser.add_argument(
        "--cudagraphs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="heavy MMoE with mode=reduce-overhead (CUDA only)",
    )
    parser.add_argument(
        "--compile-backend", default=None, help="inductor (quick: aot_eager)"
    )
    parser.add_argument(
        "--compile-estimate-s",
        type=float,
        default=None,
        help="assumed seconds of a compiled run before one was seen",
    )
    parser.add_argument(
        "--budget-s", type=float, default=None, help="skip compiled runs past this"
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads")
    parser.add_argument(
        "--out", "--results-dir", dest="out", default=None, help="output folder"
    )
    parser.add_argument("--name", default=None, help="output file stem")
    args = parser.parse_args(argv)
    q = args.quick
    args.stages = _names(parser, args.stages, STAGES, "stage")
    args.models = _names(parser, args.models, ARCHS, "model")
    args.sizes = _names(parser, args.sizes, tuple(BATCH), "size")
    args.device = args.device or ("cpu" if q else "cuda")
    args.rows = args.rows or (20_000 if q else 2_000_000)
    args.steps = args.steps or (4 if q else 200)
    args.agreement_batch = args.agreement_batch or (256 if q else 2048)
    args.weighting_steps = args.weighting_steps or (2 if q else 40)
    args.valid_rows = args.valid_rows or (2_000 if q else 100_000)
    args.parity_rows = args.parity_rows or (512 if q else 16_384)
    args.warm_steps = args.warm_steps or (2 if q else 5)
    args.timed_steps = args.timed_steps or (3 if q else 100)
    args.compile_backend = args.compile_backend or ("aot_eager" if q else "inductor")
    args.compile_estimate_s = args.compile_estimate_s or (10.0 if q else 40.0)
    args.budget_s = args.budget_s or (600.0 if q else 330.0)
    args.batch = dict(QUICK_BATCH if q else BATCH)
    args.out = args.out or str(_common.RESULTS_DIR)
    args.name = args.name or (f"{NAME}_quick" if q else NAME)
    return args


def _names(
    parser: argparse.ArgumentParser, text: str, known: Sequence[str], what: str
) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in known:
            parser.error(f"unknown {what} {n!r}; choose from {', '.join(known)}")
    return names


def run(args: argparse.Namespace, device: torch.device) -> Check:
    check = Check(args)
    info: dict[str, Any] = {}
    check.payload["device"] = info
    with check.stage("device"):
        info.update(device_info(device))
        print(
            f"  {info.get('name', str(device))}, driver {info.get('driver')}, torch "
            f"{info['torch']}, CUDA {info['torch_cuda']}, cuDNN {info['cudnn']}, "
            f"Python {info['python']}",
            flush=True,
        )
        n = 8192 if device.type == "cuda" else 256
        gemm = {"n": n}
        for label, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            gemm[f"{label}_tflops"] = matmul_tflops(device, dtype, n)
        info["matmul"] = gemm
        print(
            f"  matmul n={n}: bf16 {gemm['bf16_tflops']:.1f} TFLOP/s, fp32 "
            f"{gemm['fp32_tflops']:.1f} TFLOP/s",
            flush=True,
        )
    need_data = any(s in args.stages for s in STAGES[1:])
    if not need_data:
        return check
    with check.stage("data"):
        data = _simulated.prepare(args.rows, args.seed)
        check.payload["data"] = {
            "source": "simulated",
            "rows": args.rows,
            "splits": data.describe(),
            "seconds": round(data.seconds, 1),
        }
        print(
            f"  {args.rows:,} simulated rows in {data.seconds:.1f} s: "
            f"{data.describe()}",
            flush=True,
        )
    if "data" not in check.payload:
        return check
    trained: dict[str, MultiTaskModel] = {}
    if "agreement" in args.stages:
        with check.stage("agreement"):
            trained = stage_agreement(check, data, device)
    if "weighting" in args.stages:
        with check.stage("weighting"):
            stage_weighting(check, data, device)
    tables: dict[str, TensorTable] = {}
    if "throughput" in args.stages:
        with check.stage("throughput"):
            host = data.tables["train"]
            tables = {"host": head(host, len(host)), "device": host.to(device)}
            stage_throughput(check, data, device, tables, compiled=False)
    if "onnx" in args.stages:
        with check.stage("onnx"):
            model = trained.get("mmoe")
            if model is None:
                run_ = Short("mmoe", str(device), False, args.seed)
                _, model = train_short(
                    run_,
                    data,
                    args.steps,
                    args.agreement_batch,
                    None,
                    _simulated.project_parameters(),
                )
            stage_onnx(check, model, data, device)
    if "throughput" in args.stages and args.compile:
        with check.stage("throughput_compiled"):
            stage_throughput(check, data, device, tables, compiled=True)
    check.payload["targets"] = targets(check, device)
    return check


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if _MISSING is not None:
        hint = (
            " (the project's configuration is pydantic: on a machine without a "
            "package registry, carry its wheels, see the GPU section of "
            "benchmarks/README.md)"
            if getattr(_MISSING, "name", "") and "pydantic" in str(_MISSING.name)
            else ""
        )
        print(
            f"gpu_check: cannot import the project: {_MISSING}{hint}", file=sys.stderr
        )
        return 2
    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        hint = "" if args.quick else " (--quick runs the check on the CPU)"
        print(f"gpu_check: {exc}{hint}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"{NAME}: device {device}, stages {','.join(args.stages)}, models "
        f"{','.join(args.models)}, budget {args.budget_s:.0f} s for compiled runs",
        flush=True,
    )
    check = run(args, device)
    path = check.write()
    print_summary(check)
    print(f"\nwrote {path}")
    return 0 if not check.failed else 1


if __name__ == "__main__":
    sys.exit(main())
