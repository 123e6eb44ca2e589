"""Serving: ONNX Runtime vs PyTorch eager, latency at batch 1, rows/s at batch 1024.

Every architecture with its experiment's parameters on the simulated data's
feature schema (encoder fitted on ``--schema-rows`` rows), untrained (seeded)
weights, exported with ``export_onnx``; the same rows scored three ways with
the same thread count, interleaved in ``--rounds`` rounds: ``torch``
(``model.predict``), ``onnxruntime`` (a raw session on prebuilt per-feature
feeds) and ``onnx_predictor`` (``OnnxPredictor.predict``, per-call feed
building included). Batch 1: each call timed alone; batch ``--batch-size``:
rows/s = batch / median call time. Parity: ``check_parity`` at both batches.

    python benchmarks/serving.py                   # five models, threads 1 and 2
    python benchmarks/serving.py --models mmoe,ple --threads 1
    python benchmarks/serving.py --quick           # CI smoke: ESMM, 1 thread

Writes ``results/serving.json`` (``--quick``: ``serving_quick.json``).
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

import _simulated
import harness
from _simulated import ARCHS
from harness import Table, option
from mtl_reco.modeling.export import check_parity, export_onnx
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.serving import OnnxPredictor

NAME = "serving"
VARIANTS = ("torch", "onnxruntime", "onnx_predictor")
LABELS = ("PyTorch", "ONNX Runtime", "OnnxPredictor")
DESCRIPTIONS = {
    "torch": "model.predict(sparse, dense) in torch.inference_mode(), eval mode, "
    "int32/float32 (B, n) tensors",
    "onnxruntime": "raw onnxruntime.InferenceSession (CPU provider, "
    "intra_op_num_threads = threads, inter_op 1, sequential, ORT_ENABLE_ALL) on "
    "prebuilt per-feature 1-D feeds",
    "onnx_predictor": "mtl_reco OnnxPredictor.predict on (B, n) numpy matrices "
    "(per-call feed building included), same session settings",
}
USABLE = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


@dataclass
class Options(harness.Config):
    models: tuple[str, ...] = option(ARCHS, "", quick=("esmm",), choices=ARCHS)
    threads: tuple[int, ...] = option(  # type: ignore[assignment]
        tuple(sorted({1, USABLE})), "thread counts", quick=(1,)
    )
    schema_rows: int = option(500_000, "simulated rows for the schema", quick=10_000)
    latency_calls: int = option(3000, "timed calls at batch 1", quick=100)
    throughput_calls: int = option(100, "timed calls at --batch-size", quick=4)
    batch_size: int = option(1024, "throughput batch")
    warmup: int = option(200, "untimed calls first", quick=10)
    rounds: int = option(5, "interleaved rounds", quick=2)
    seed: int = option(2026, "weight initialisation seed")


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def callers(model: Any, sess: Any, pred: Any, table: Any, batch: int, n: int) -> dict:
    """Per variant, ``n`` zero-argument scoring calls on different rows."""
    inputs = pred.description["inputs"]  # sparse fields first, then dense
    outputs = [o.name for o in sess.get_outputs()]
    calls: dict[str, list[Callable[[], Any]]] = {v: [] for v in VARIANTS}
    for k in range(n):
        rows = slice(k * batch, (k + 1) * batch)
        s, d = table.sparse[rows].contiguous(), table.dense[rows].contiguous()
        s_np, d_np = s.numpy(), d.numpy()
        feeds = {
            spec["name"]: np.ascontiguousarray(s_np[:, j], dtype=np.int64)
            if spec["kind"] == "sparse"
            else np.ascontiguousarray(d_np[:, j - s_np.shape[1]], dtype=np.float32)
            for j, spec in enumerate(inputs)
        }

        def torch_call(s: torch.Tensor = s, d: torch.Tensor = d) -> Any:
            with torch.inference_mode():
                return model.predict(s, d)

        calls["torch"].append(torch_call)
        calls["onnxruntime"].append(lambda f=feeds: sess.run(outputs, f))
        calls["onnx_predictor"].append(
            lambda s=s_np, d=d_np: pred.predict(s, d, batch_size=batch)
        )
    return calls


def interleaved(
    calls: dict, n: int, warmup: int, rounds: int
) -> dict[str, list[float]]:
    """Seconds per call: ``warmup`` untimed calls, then ``n`` in ``rounds`` rounds."""
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    per_round = max(1, n // rounds)
    for r in range(-1, rounds):  # round -1: the warm-up
        for variant in VARIANTS:
            fns = calls[variant]
            for i in range(warmup if r < 0 else per_round):
                fn = fns[(r * per_round + i) % len(fns)]
                t0 = time.perf_counter()
                fn()
                if r >= 0:
                    samples[variant].append(time.perf_counter() - t0)
    return samples


def measure(arch: str, schema: Any, table: Any, opts: Options, folder: Path) -> dict:
    """Export one architecture and time the variants at every thread count."""
    torch.manual_seed(opts.seed)
    params = _simulated.model_params(arch, _simulated.project_parameters())
    model = build_model(arch, schema, config=params).eval()
    path = folder / f"{arch}.onnx"
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        description = export_onnx(model, path)
    b = opts.batch_size
    head = (table.sparse[:b], table.dense[:b])
    parity = {
        str(b): check_parity(model, path, head, max_rows=None, batch_size=b),
        "1": check_parity(model, path, (head[0][:64], head[1][:64]), batch_size=1),
    }
    out: dict[str, Any] = {
        "model": arch, "n_parameters": sum(p.numel() for p in model.parameters()),
        "outputs": list(model.output_names), "onnx_bytes": path.stat().st_size,
        "exporter": description["exporter"],
        "export_s": round(time.perf_counter() - start, 2),
        "parity_max_abs_diff": max(parity.values()), "parity_by_batch_size": parity,
        "by_threads": {},
    }  # fmt: skip
    for threads in opts.threads:
        torch.set_num_threads(threads)
        sess = session(path, threads)
        pred = OnnxPredictor(path)
        pred.session = sess  # the same thread settings as the raw session
        single = callers(model, sess, pred, table, 1, 256)
        lat = interleaved(single, opts.latency_calls, opts.warmup, opts.rounds)
        big = callers(model, sess, pred, table, b, max(1, min(4, len(table) // b)))
        warm = max(1, opts.warmup // 10)
        thr = interleaved(big, opts.throughput_calls, warm, opts.rounds)
        entry: dict[str, Any] = {"latency_us": {}, "throughput": {}}
        for v in VARIANTS:
            us = np.asarray(lat[v]) * 1e6
            p50, p90, p99 = (float(x) for x in np.percentile(us, [50, 90, 99]))
            entry["latency_us"][v] = {
                "calls": len(us), "median": p50, "p90": p90, "p99": p99,
                "mean": float(us.mean()), "min": float(us.min()),
            }  # fmt: skip
            median = statistics.median(thr[v])
            entry["throughput"][v] = {
                "calls": len(thr[v]), "median_ms": median * 1e3,
                "rows_per_s": b / median,
                "rows_per_s_mean": b * len(thr[v]) / sum(thr[v]),
            }  # fmt: skip
        us, rows = entry["latency_us"], entry["throughput"]
        torch_us, ort_us = us["torch"]["median"], us["onnxruntime"]["median"]
        entry["speedup_latency"] = torch_us / ort_us
        ort_rows, torch_rows = (rows[v]["rows_per_s"] for v in ("onnxruntime", "torch"))
        entry["speedup_throughput"] = ort_rows / torch_rows
        out["by_threads"][str(threads)] = entry
        harness.say(f"  {arch}, {threads} thread(s): batch 1 median {torch_us:.0f} us "
                    f"(PyTorch) vs {ort_us:.0f} us (ONNX Runtime)")  # fmt: skip
    return out


def report(doc: dict[str, Any]) -> tuple[list[Table], dict[str, Any], list[str]]:
    tables, lat_speed, thr_speed = [], [], []
    records, cfg = doc["records"], doc["config"]
    for t in records[0]["by_threads"] if records else ():
        lat = Table(
            f"**{t} thread(s)** - latency at batch 1 (microseconds):",
            [("model", ""), ("PyTorch median", ",.0f"), ("PyTorch p99", ",.0f"),
             ("ONNX Runtime median", ",.0f"), ("ONNX Runtime p99", ",.0f"),
             ("OnnxPredictor median", ",.0f"), ("speed-up (median)", "{:.2f}x")],
        )  # fmt: skip
        thr = Table(
            f"**{t} thread(s)** - throughput at batch {cfg['batch_size']} (rows/s):",
            [("model", ""), *((label, ",.0f") for label in LABELS),
             ("ONNX Runtime / PyTorch", "{:.2f}x"), ("parity (max abs diff)", ".1e")],
        )  # fmt: skip
        for r in records:
            e = r["by_threads"][t]
            us, rows = e["latency_us"], e["throughput"]
            lat.rows.append(
                [r["model"], us["torch"]["median"], us["torch"]["p99"],
                 us["onnxruntime"]["median"], us["onnxruntime"]["p99"],
                 us["onnx_predictor"]["median"], e["speedup_latency"]]
            )  # fmt: skip
            thr.rows.append(
                [r["model"], *(rows[v]["rows_per_s"] for v in VARIANTS),
                 e["speedup_throughput"], r["parity_max_abs_diff"]]
            )  # fmt: skip
            lat_speed.append(e["speedup_latency"])
            thr_speed.append(e["speedup_throughput"])
        tables += [lat, thr]
    figures = {} if not records else {
        "latency_speedup_min": min(lat_speed), "latency_speedup_max": max(lat_speed),
        "throughput_ratio_min": min(thr_speed), "throughput_ratio_max": max(thr_speed),
        "parity_max": max(r["parity_max_abs_diff"] for r in records),
    }  # fmt: skip
    s = doc["schema"]
    notes = [
        f"{cfg['latency_calls']:,} timed calls per variant at batch 1 and "
        f"{cfg['throughput_calls']:,} at batch {cfg['batch_size']}, interleaved in "
        f"{cfg['rounds']} rounds after {cfg['warmup']} warm-up calls; schema of "
        f"{cfg['schema_rows']:,} simulated rows ({s['sparse_fields']} sparse fields, "
        f"total cardinality {s['total_cardinality']:,}, {s['dense_fields']} dense); "
        f"ONNX Runtime {doc['onnxruntime_version']}; untrained (seeded "
        "initialisation).",
        "\n".join(f"- `{k}`: {v}" for k, v in DESCRIPTIONS.items()),
    ]
    return tables, figures, notes


def main(argv: list[str] | None = None) -> int:
    opts = harness.parse(Options, argv, __doc__ or "")
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(
        logging.ERROR
    )  # one warning per torchvision op it cannot register
    result = harness.start(NAME, opts)
    data = _simulated.prepare(opts.schema_rows, seed=2024, splits=("test",))
    table = data.tables["test"]
    need = max(256, 4 * opts.batch_size)
    if len(table) < need:  # a small schema sample: repeat rows to fill the pool
        index = torch.arange(len(table)).repeat(-(-need // len(table)))
        table = table.subset(index[:need])
    with tempfile.TemporaryDirectory(prefix="serving_") as tmp:
        records = [measure(a, data.schema, table, opts, Path(tmp)) for a in opts.models]
    sparse = data.schema.sparse
    schema = {"sparse_fields": len(sparse), "dense_fields": len(data.schema.dense),
              "total_cardinality": sum(f.cardinality for f in sparse)}  # fmt: skip
    result.results = {"onnxruntime_version": ort.__version__, "schema": schema,
                      "records": records}  # fmt: skip
    return result.finish(report, opts.results_dir)


if __name__ == "__main__":
    sys.exit(main())
