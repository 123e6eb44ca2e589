"""Serving: ONNX Runtime vs PyTorch eager, latency at batch 1, rows/s at batch 1024.

For every architecture (SharedBottom, ESMM, MMoE, PLE, AITM) with the
hyperparameters of its experiment block in ``conf/base/parameters_training.yml``
on the simulated data's feature schema (the encoder is fitted on the train
split of ``--schema-rows`` simulated rows, 500 000 by default = what
``kedro run`` trains on), untrained weights (initialised with ``--seed``;
latency does not depend on the weights):

* the model is exported with ``mtl_reco.modeling.export.export_onnx`` (one
  1-D input per feature, probabilities out, opset 18);
* three ways of scoring the same rows (encoded rows of the test split) are
  timed, interleaved in ``--rounds`` rounds so that a change of machine load
  hits all of them alike:

  - ``torch``: ``model.predict(sparse, dense)`` under
    ``torch.inference_mode()`` on ``(B, n_sparse)`` int32 / ``(B, n_dense)``
    float32 tensors (what ``TensorTable`` holds), eval mode;
  - ``onnxruntime``: a raw ``onnxruntime.InferenceSession`` (CPU provider,
    ``intra_op_num_threads`` = the thread count under test,
    ``inter_op_num_threads`` = 1, sequential execution, all graph
    optimisations) fed the per-feature 1-D arrays (int64 ids, float32
    values) that ``OnnxPredictor`` builds, prepared before the clock starts;
  - ``onnx_predictor``: ``OnnxPredictor.predict(sparse, dense)`` on the
    ``(B, n)`` numpy matrices (the ``score`` pipeline's path: per-call column
    split and casts included), its session replaced by the one above so the
    thread count is the same;

* batch 1: ``--latency-calls`` calls per variant (after ``--warmup``
  untimed ones) cycling over 256 different rows, each call timed alone;
  median, p90, p99 and mean in microseconds;
* batch ``--batch-size`` (1024): ``--throughput-calls`` calls per variant,
  each timed; ``rows_per_s`` = batch / median call time (robust to load
  spikes), ``rows_per_s_mean`` = rows / total time;
* parity: ``check_parity`` (``max |torch - onnxruntime|`` over every output,
  ESMM's latent pCVR included) on 1024 rows at batch 1024 and 64 rows at
  batch 1.

PyTorch and ONNX Runtime use the same number of threads; ``--threads``
takes several values (default: 1 and the usable CPU count).

    python benchmarks/serving.py                  # all five models (~5 min on 2 cores)
    python benchmarks/serving.py --models mmoe,ple --threads 1
    python benchmarks/serving.py --quick          # CI smoke test (seconds)

Output: ``benchmarks/results/serving.json`` (``--quick``: ``serving_quick.json``;
``--results-dir`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

import _common
import _simulated
from mtl_reco.modeling.data import TensorTable
from mtl_reco.modeling.export import OnnxPredictor, check_parity, export_onnx
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.schema import FeatureSchema

NAME = "serving"
VARIANTS = ("torch", "onnxruntime", "onnx_predictor")
SINGLE_ROWS = 256


def _say(message: str) -> None:
    print(message, flush=True)


def _percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q))


def _latency_stats(seconds: list[float]) -> dict[str, Any]:
    us = [s * 1e6 for s in seconds]
    return {
        "calls": len(us),
        "median_us": statistics.median(us),
        "p90_us": _percentile(us, 90),
        "p99_us": _percentile(us, 99),
        "mean_us": statistics.fmean(us),
        "min_us": min(us),
    }


def _throughput_stats(seconds: list[float], batch: int) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {
        "calls": len(seconds),
        "batch_size": batch,
        "median_ms": median * 1e3,
        "p90_ms": _percentile(seconds, 90) * 1e3,
        "rows_per_s": batch / median,
        "rows_per_s_mean": batch * len(seconds) / sum(seconds),
    }


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _feeds(
    predictor: OnnxPredictor, sparse: np.ndarray, dense: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-feature 1-D inputs exactly as ``OnnxPredictor.predict`` builds them."""
    inputs = predictor.description["inputs"]  # sparse fields first, then dense
    n_sparse = sum(spec["kind"] == "sparse" for spec in inputs)
    feeds: dict[str, np.ndarray] = {}
    for j, spec in enumerate(inputs):
        if spec["kind"] == "sparse":
            feeds[spec["name"]] = np.ascontiguousarray(sparse[:, j], dtype=np.int64)
        else:
            feeds[spec["name"]] = np.ascontiguousarray(
                dense[:, j - n_sparse], dtype=np.float32
            )
    return feeds


class _Callers:
    """One zero-argument scoring call per variant, for a list of inputs."""

    def __init__(
        self,
        model: MultiTaskModel,
        session: ort.InferenceSession,
        predictor: OnnxPredictor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        batch: int,
        n_inputs: int,
    ) -> None:
        outputs = [o.name for o in session.get_outputs()]
        self.calls: dict[str, list[Callable[[], Any]]] = {v: [] for v in VARIANTS}
        for k in range(n_inputs):
            rows = slice(k * batch, (k + 1) * batch)
            s_t, d_t = sparse[rows].contiguous(), dense[rows].contiguous()
            s_np, d_np = s_t.numpy(), d_t.numpy()
            feeds = _feeds(predictor, s_np, d_np)

            def torch_call(s: torch.Tensor = s_t, d: torch.Tensor = d_t) -> Any:
                with torch.inference_mode():
                    return model.predict(s, d)

            def ort_call(f: dict = feeds) -> Any:
                return session.run(outputs, f)

            def predictor_call(s: np.ndarray = s_np, d: np.ndarray = d_np) -> Any:
                return predictor.predict(s, d, batch_size=batch)

            self.calls["torch"].append(torch_call)
            self.calls["onnxruntime"].append(ort_call)
            self.calls["onnx_predictor"].append(predictor_call)


def _timed(calls: list[Callable[[], Any]], n: int, offset: int) -> list[float]:
    out = []
    clock = time.perf_counter
    for i in range(n):
        call = calls[(offset + i) % len(calls)]
        start = clock()
        call()
        out.append(clock() - start)
    return out


def _interleaved(
    callers: _Callers, calls: int, warmup: int, rounds: int
) -> dict[str, list[float]]:
    for variant in VARIANTS:
        _timed(callers.calls[variant], warmup, 0)
    per_round = max(1, calls // rounds)
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        for variant in VARIANTS:
            samples[variant] += _timed(callers.calls[variant], per_round, r * per_round)
    return samples


def measure_model(
    arch: str,
    params: dict[str, Any],
    schema: FeatureSchema,
    data: TensorTable,
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    """Export one architecture and time the three variants at every thread count."""
    torch.manual_seed(args.seed)
    model = build_model(arch, schema, config=params).eval()
    path = workdir / f"{arch}.onnx"
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        description = export_onnx(model, path)
    export_s = time.perf_counter() - start
    sparse, dense = data.sparse, data.dense
    parity = {
        str(args.batch_size): check_parity(
            model,
            path,
            (sparse[: args.batch_size], dense[: args.batch_size]),
            max_rows=None,
            batch_size=args.batch_size,
        ),
        "1": check_parity(model, path, (sparse[:64], dense[:64]), batch_size=1),
    }
    result: dict[str, Any] = {
        "model": arch,
        "params": params,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "outputs": list(model.output_names),
        "onnx_bytes": path.stat().st_size,
        "exporter": description["exporter"],
        "opset": description["opset"],
        "export_s": round(export_s, 2),
        "parity_max_abs_diff": max(parity.values()),
        "parity_by_batch_size": parity,
        "by_threads": {},
    }
    _say(
        f"  {arch}: {result['n_parameters']:,} parameters, exported in "
        f"{export_s:.1f} s ({description['exporter']}), parity "
        f"{result['parity_max_abs_diff']:.1e}"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        session = _session(path, threads)
        predictor = OnnxPredictor(path)
        predictor.session = session  # same thread settings as the raw session
        single = _Callers(model, session, predictor, sparse, dense, 1, SINGLE_ROWS)
        lat = _interleaved(single, args.latency_calls, args.warmup, args.rounds)
        n_big = max(1, min(4, len(data) // args.batch_size))
        big = _Callers(model, session, predictor, sparse, dense, args.batch_size, n_big)
        thr = _interleaved(
            big, args.throughput_calls, max(1, args.warmup // 10), args.rounds
        )
        entry = {
            "latency_batch1": {v: _latency_stats(lat[v]) for v in VARIANTS},
            "throughput": {
                v: _throughput_stats(thr[v], args.batch_size) for v in VARIANTS
            },
        }
        t_lat = entry["latency_batch1"]
        t_thr = entry["throughput"]
        entry["speedup_onnxruntime_vs_torch"] = {
            "latency_median": t_lat["torch"]["median_us"]
            / t_lat["onnxruntime"]["median_us"],
            "latency_p99": t_lat["torch"]["p99_us"] / t_lat["onnxruntime"]["p99_us"],
            "throughput": t_thr["onnxruntime"]["rows_per_s"]
            / t_thr["torch"]["rows_per_s"],
        }
        result["by_threads"][str(threads)] = entry
        _say(
            f"    threads={threads}: batch 1 median torch "
            f"{t_lat['torch']['median_us']:.0f} us / onnxruntime "
            f"{t_lat['onnxruntime']['median_us']:.0f} us (p99 "
            f"{t_lat['torch']['p99_us']:.0f} / {t_lat['onnxruntime']['p99_us']:.0f}); "
            f"batch {args.batch_size}: torch {t_thr['torch']['rows_per_s']:,.0f} "
            f"rows/s, onnxruntime {t_thr['onnxruntime']['rows_per_s']:,.0f} rows/s"
        )
    return result


def _usable_cpus() -> int:
    info = _common.machine_info()
    return int(info["usable_cpus"] or 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run")
    parser.add_argument(
        "--models",
        default=None,
        help=f"comma-separated subset of {','.join(_simulated.ARCHS)} (default all; "
        "--quick: esmm)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="thread counts for PyTorch and ONNX Runtime (default: 1 and the "
        "usable CPU count; --quick: 1)",
    )
    parser.add_argument("--schema-rows", type=int, default=None)
    parser.add_argument("--latency-calls", type=int, default=None)
    parser.add_argument("--throughput-calls", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "models": "esmm" if quick else ",".join(_simulated.ARCHS),
        "threads": [1] if quick else sorted({1, _usable_cpus()}),
        "schema_rows": 10_000 if quick else 500_000,
        "latency_calls": 100 if quick else 3000,
        "throughput_calls": 4 if quick else 100,
        "warmup": 10 if quick else 200,
        "rounds": 2 if quick else 5,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(_simulated.ARCHS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {_simulated.ARCHS}")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # torch's exporter logs one warning per torchvision op it cannot register
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(
        logging.ERROR
    )
    wall = time.perf_counter()
    params = _simulated.project_parameters()
    _say(f"encoding {args.schema_rows:,} simulated rows for the feature schema ...")
    data = _simulated.prepare(args.schema_rows, seed=2024, splits=("test",))
    table = data.tables["test"]
    need = max(SINGLE_ROWS, 4 * args.batch_size)
    if len(table) < need:  # small --schema-rows: repeat rows to fill the pool
        reps = -(-need // len(table))
        index = torch.arange(len(table)).repeat(reps)[:need]
        table = table.subset(index)
    _say(
        f"  schema: {len(data.schema.sparse)} sparse fields (total cardinality "
        f"{sum(f.cardinality for f in data.schema.sparse):,}), "
        f"{len(data.schema.dense)} dense; {data.seconds:.1f} s"
    )
    machine = _common.machine_info()
    results = []
    with tempfile.TemporaryDirectory(prefix="serving_") as tmp:
        for arch in args.models:
            params_arch = _simulated.model_params(arch, params)
            results.append(
                measure_model(arch, params_arch, data.schema, table, args, Path(tmp))
            )
    payload = {
        "config": {
            "quick": args.quick,
            "models": args.models,
            "threads": args.threads,
            "schema_rows": args.schema_rows,
            "batch_size": args.batch_size,
            "latency_calls": args.latency_calls,
            "throughput_calls": args.throughput_calls,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "seed": args.seed,
            "weights": "untrained (seeded initialisation)",
            "hyperparameters": "conf/base/parameters_training.yml <model>.model.params",
        },
        "schema": {
            "sparse_fields": len(data.schema.sparse),
            "dense_fields": len(data.schema.dense),
            "total_cardinality": sum(f.cardinality for f in data.schema.sparse),
            "embedding_dims": sorted({f.embedding_dim for f in data.schema.sparse}),
        },
        "variants": {
            "torch": "model.predict(sparse, dense) in torch.inference_mode(), eval "
            "mode, int32/float32 (B, n) tensors",
            "onnxruntime": "raw onnxruntime.InferenceSession (CPU provider, "
            "intra_op_num_threads = threads, inter_op 1, sequential, "
            "ORT_ENABLE_ALL) on prebuilt per-feature 1-D feeds",
            "onnx_predictor": "mtl_reco OnnxPredictor.predict on (B, n) numpy "
            "matrices (per-call feed building included), same session settings",
        },
        "onnxruntime_version": ort.__version__,
        "machine": machine,
        "results": results,
        "load_average_end": _common.load_average(),
        "peak_rss_mb": _common.peak_rss_mb(),
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    name = f"{NAME}_quick" if args.quick else NAME
    path = _common.write_result(name, payload, args.results_dir)
    _say(f"wrote {path} ({payload['wall_s']} s)")
    return path


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
