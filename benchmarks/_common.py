"""Helpers shared by the benchmark scripts in ``benchmarks/``.

* :func:`measure_gemm` - the machine's float32 matrix-multiply speed, measured
  in-process with the thread count the benchmark itself uses (the reference
  for "share of the GEMM figure");
* :func:`machine_info` - CPU model, cores, load, torch version and threads;
* :func:`peak_rss_mb` - peak resident memory of this process;
* :func:`write_result` - ``benchmarks/results/<name>.json``, written atomically
  with a UTC timestamp and the exact command line;
* :class:`Timer` - a tiny wall-clock timer (context manager).

Scripts import this module as ``import _common`` (they run as
``python benchmarks/<script>.py``, so ``benchmarks/`` is on ``sys.path``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PROJECT_ROOT = BENCH_DIR.parent


class Timer:
    """Wall-clock timer: ``with Timer() as t: ...; t.elapsed`` (seconds).

    ``elapsed`` is live while the block runs and frozen when it exits.
    """

    def __init__(self) -> None:
        self.start = 0.0
        self.end: float | None = None

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.end = None
        return self

    def __exit__(self, *exc: object) -> None:
        self.end = time.perf_counter()

    @property
    def elapsed(self) -> float:
        stop = self.end if self.end is not None else time.perf_counter()
        return stop - self.start


def measure_gemm(
    n: int = 2048,
    warmup: int = 2,
    repeats: int = 7,
    threads: int | None = None,
) -> dict[str, Any]:
    """Float32 GFLOP/s of a square ``(n, n) @ (n, n)`` matmul on the CPU.

    One product costs ``2 * n**3`` floating-point operations. The product is
    repeated ``warmup`` times untimed, then ``repeats`` times timed one by
    one; the best repetition is the machine's attainable GEMM speed with
    these threads, the median says how much other load disturbed it.

    Args:
        n: Matrix size.
        warmup: Untimed repetitions (thread pool start, caches).
        repeats: Timed repetitions.
        threads: Torch intra-op threads for the measurement (``None``: the
            current setting, i.e. what the benchmark uses); restored after.

    Returns:
        ``{"n", "threads", "best_gflops", "median_gflops", "samples_gflops"}``.
    """
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=gen)
        b = torch.randn(n, n, generator=gen)
        out = torch.empty(n, n)
        for _ in range(warmup):
            torch.mm(a, b, out=out)
        flops = 2.0 * n**3
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            samples.append(flops / (time.perf_counter() - start) / 1e9)
        return {
            "n": n,
            "threads": torch.get_num_threads(),
            "best_gflops": max(samples),
            "median_gflops": statistics.median(samples),
            "samples_gflops": [round(s, 2) for s in samples],
        }
    finally:
        torch.set_num_threads(old)


def combine_gemm(measurements: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Pool several :func:`measure_gemm` results taken during one run.

    The best of all samples is the reference figure; the median of all
    samples and the spread between the measurements show the noise.
    """
    samples = [s for m in measurements for s in m["samples_gflops"]]
    return {
        "n": measurements[0]["n"],
        "threads": measurements[0]["threads"],
        "best_gflops": max(samples),
        "median_gflops": statistics.median(samples),
        "per_measurement_best": [round(m["best_gflops"], 2) for m in measurements],
        "per_measurement_median": [round(m["median_gflops"], 2) for m in measurements],
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (``None`` where unsupported)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """Facts that make a timing interpretable on another machine."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "load_average": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "mkl": bool(torch.backends.mkl.is_available()),
        "cuda": torch.cuda.is_available(),
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux: ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return round(peak / scale * 1.0, 1)


def command_line() -> str:
    """The exact command that started this process (``python <argv...>``)."""
    return shlex.join(["python", *sys.argv])


def _clean(value: Any) -> Any:
    """Make ``value`` strict JSON (NaN/inf -> None, tuples -> lists)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_result(
    name: str, payload: Mapping[str, Any], results_dir: Path | None = None
) -> Path:
    """Write ``<results_dir>/<name>.json`` atomically and return its path.

    The file holds ``payload`` plus ``benchmark`` (the name), ``timestamp``
    (UTC, ISO 8601) and ``command`` (the exact command line), written to a
    temporary file first and moved into place, so a reader never sees half
    a file.

    Args:
        name: Benchmark name (file stem).
        payload: JSON-serialisable results.
        results_dir: Folder (default ``benchmarks/results``).
    """
    folder = Path(results_dir) if results_dir is not None else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command_line(),
        **payload,
    }
    path = folder / f"{name}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(_clean(document), fh, indent=2, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
