"""The harness every script in ``benchmarks/`` runs on (``import harness``).

* options: a dataclass derived from :class:`Config` (fields made with
  :func:`option`); :func:`parse` makes the command line from it, one
  ``--kebab-name`` per field, each with its ``--quick`` default;
* :func:`start` applies ``--threads`` and captures the machine and its load;
  :func:`measure_gemm` is the float32 GEMM reference a benchmark may need;
* :class:`Result` is what a run writes, atomically: ``<name>.json`` with the
  UTC timestamp, the exact command, wall time, peak RSS, the ``figures`` a
  reading quotes, the ``tables`` (:class:`Table`), ``notes`` and the compact
  ``results``; :func:`fmt` formats a table cell for stdout and the report.

Torch is imported inside the functions that need it (``make_report.py``
uses this module without it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import time
import traceback
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PROJECT_ROOT = BENCH_DIR.parent
C = TypeVar("C", bound="Config")


# -- options ----------------------------------------------------------------------
def option(default: Any, help: str = "", **meta: Any) -> Any:
    """A :class:`Config` field: default, help and optionally ``quick`` (its
    default under ``--quick``), ``choices`` and more ``flags``."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class Config:
    """Options of every benchmark; a script derives its own from it."""

    quick: bool = option(False, "tiny CI smoke run, written to <name>_quick.json")
    results_dir: str = option(str(RESULTS_DIR), "folder of the JSON result")
    name: str | None = option(None, "result file stem (default: the script's)")
    threads: int | None = option(None, "torch intra-op threads")


def _converter(hint: Any) -> Callable[[str], Any]:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        item = args[0]
        return lambda text: tuple(item(s.strip()) for s in text.split(",") if s.strip())
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _converter(args[0])
    return typing.cast(Callable[[str], Any], hint)


def parse(cls: type[C], argv: Sequence[str] | None = None, doc: str = "") -> C:
    """Build ``cls`` from the command line (one option per field).

    ``bool`` fields are flags (``--x`` / ``--no-x``); ``tuple[...]`` fields
    take comma-separated values. An option not given takes the field's
    ``quick`` value under ``--quick``, else its default; ``choices`` are
    checked item by item.
    """
    hints = typing.get_type_hints(cls)
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] or None)
    for f in fields(cls):
        meta, hint = f.metadata, hints[f.name]
        shown = f.default
        if isinstance(shown, tuple):
            shown = ",".join(map(str, shown))
        quick = f"; --quick: {meta['quick']}" if "quick" in meta else ""
        kwargs: dict[str, Any] = {"dest": f.name, "default": None}
        if bool in (hint, *typing.get_args(hint)):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _converter(hint)
        text = f"{meta['help']} (default: {shown}{quick})".replace("%", "%%").lstrip()
        flags = ["--" + f.name.replace("_", "-"), *meta.get("flags", ())]
        parser.add_argument(*flags, help=text, **kwargs)
    ns, values = parser.parse_args(argv), {}
    for f in fields(cls):
        value = getattr(ns, f.name)
        if value is None:
            value = f.metadata.get("quick", f.default) if ns.quick else f.default
        allowed = f.metadata.get("choices", ())
        for item in value if isinstance(value, tuple) else (value,):
            if allowed and item not in allowed:
                parser.error(f"unknown {f.name} {item!r}; choose from {allowed}")
        values[f.name] = value
    return cls(**values)


# -- machine ----------------------------------------------------------------------
def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (``None`` where unsupported)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def machine_info() -> dict[str, Any]:
    """CPU, cores, load, Python, torch version and threads: what makes a timing
    interpretable on another machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        names = [
            ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "cpu_model": cpu, "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else None,
        "load_average": load_average(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
    }  # fmt: skip


def measure_gemm(n: int = 2048, repeats: int = 7) -> list[float]:
    """GFLOP/s of ``repeats`` float32 ``(n, n) @ (n, n)`` products (2 warm-ups),
    with the current torch threads; the best is the machine's attainable speed,
    the median shows how much other load disturbed it."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    samples = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        if i >= 2:
            samples.append(2.0 * n**3 / (time.perf_counter() - t0) / 1e9)
    return samples


def gemm_record(measurements: Sequence[Sequence[float]], n: int) -> dict[str, Any]:
    """Pool several :func:`measure_gemm` results of one run."""
    import torch

    pooled = [s for m in measurements for s in m]
    return {
        "n": n, "threads": torch.get_num_threads(),
        "best_gflops": round(max(pooled), 2),
        "median_gflops": round(statistics.median(pooled), 2),
        "per_measurement_best": [round(max(m), 2) for m in measurements],
    }  # fmt: skip


# -- small helpers ----------------------------------------------------------------
def mean_std(values: Sequence[Any]) -> dict[str, Any]:
    """``{"mean", "std" (sample std, None below 2), "n"}`` of the finite values."""
    xs = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return {
        "mean": statistics.fmean(xs) if xs else None,
        "std": statistics.stdev(xs) if len(xs) > 1 else None,
        "n": len(xs),
    }


def guarded(fn: Callable[..., dict[str, Any]], *args: Any, **kw: Any) -> dict[str, Any]:
    """``fn(...)``; an exception becomes ``{"status": "error", "error", "where"}``."""
    try:
        return fn(*args, **kw)
    except Exception as exc:  # recorded in the JSON, never hidden
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return {
            "status": "error",
            "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
            "where": f"{Path(last.filename).name}:{last.lineno} in {last.name}",
        }


def say(text: str) -> None:
    print(text, flush=True)


# -- tables and results -----------------------------------------------------------
def fmt(value: Any, spec: str = "") -> str:
    """One cell: ``None``/NaN -> ``-``; ``spec`` ``±D`` (``±Dn`` adds ``(n=..)``)
    for ``{"mean", "std", "n"}``; a spec with ``{`` is a format string, any
    other a format spec (``,.0f``, ``.2%``); no spec: ``str``."""
    if spec.startswith("±") and isinstance(value, int | float):
        value = {"mean": value}
    if isinstance(value, Mapping) and spec.startswith("±"):
        mean, std, n, d = value.get("mean"), value.get("std"), value.get("n"), spec[1]
        if mean is None:
            return "-"
        text = f"{mean:.{d}f}" + ("" if std is None else f" ± {std:.{d}f}")
        return text + (f" (n={n})" if spec.endswith("n") and n is not None else "")
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if not spec or isinstance(value, bool | str):
        return str(value)
    return spec.format(value) if "{" in spec else format(value, spec)


@dataclass
class Table:
    """A titled table: ``columns`` as ``(header, cell format)``, raw ``rows``."""

    title: str
    columns: list[tuple[str, str]]
    rows: list[list[Any]] = field(default_factory=list)

    def cells(self) -> list[list[str]]:
        specs = [spec for _, spec in self.columns]
        return [
            [fmt(v, s) for v, s in zip(row, specs, strict=True)] for row in self.rows
        ]

    def to_dict(self) -> dict[str, Any]:
        names, formats = ([c[i] for c in self.columns] for i in (0, 1))
        return {"title": self.title, "columns": names, "formats": formats,
                "rows": self.rows}  # fmt: skip

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Table:
        cols = list(zip(doc["columns"], doc["formats"], strict=True))
        return cls(doc["title"], cols, [list(r) for r in doc["rows"]])

    def text(self) -> str:
        """Fixed-width text for stdout."""
        body = [[c for c, _ in self.columns], *self.cells()]
        widths = [max(len(r[j]) for r in body) for j in range(len(self.columns))]
        lines = [self.title]
        left = [not spec for _, spec in self.columns]
        for row in body:
            cells = zip(row, widths, left, strict=True)
            lines.append(
                "  ".join(c.ljust(w) if x else c.rjust(w) for c, w, x in cells)
            )
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    """Strict JSON: NaN/inf -> None, tuples -> lists, paths -> str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def dumps(value: Any, pad: str = "") -> str:
    """JSON with one item per line only where a value does not fit on one."""
    flat = json.dumps(value, ensure_ascii=False, allow_nan=False)
    if len(flat) + len(pad) <= 96 or not isinstance(value, dict | list) or not value:
        return flat
    inner = pad + " "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    return "[\n" + ",\n".join(inner + dumps(v, inner) for v in value) + f"\n{pad}]"


@dataclass
class Result:
    """One run of a benchmark, as written to ``<results_dir>/<benchmark>.json``."""

    benchmark: str
    config: dict[str, Any]
    machine: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    results: Any = None
    timestamp: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    command: str = field(default_factory=lambda: shlex.join(["python", *sys.argv]))
    started: float = field(default_factory=time.perf_counter)

    def to_dict(self) -> dict[str, Any]:
        doc = {k: v for k, v in asdict(self).items() if k != "started"}
        doc["tables"] = [t.to_dict() for t in self.tables]
        doc["wall_s"] = round(time.perf_counter() - self.started, 1)
        return {
            k: doc[k] for k in ("benchmark", "timestamp", "command", "wall_s")
        } | doc

    def finish(self, report: Callable[[dict[str, Any]], Any], folder: str) -> int:
        """Fill tables, figures and notes from ``report({"config", **results})``,
        write the file; the script's exit status."""
        self.tables, self.figures, self.notes = report(
            {"config": self.config, **self.results}
        )
        self.write(folder)
        return 0

    def write(self, folder: Path | str, quiet: bool = False) -> Path:
        """Write the JSON atomically (temporary file, then rename); unless
        ``quiet``, print the tables and the path."""
        self.machine.update(load_average_end=load_average(), peak_rss_mb=peak_rss_mb())
        path = Path(folder) / f"{self.benchmark}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(dumps(_plain(self.to_dict())) + "\n")
        os.replace(tmp, path)
        if not quiet:
            for table in self.tables:
                say(f"\n{table.text()}")
            say(f"\nwrote {path} ({time.perf_counter() - self.started:.0f} s)")
        return path


def start(name: str, cfg: Config, **config: Any) -> Result:
    """Apply ``--threads``, capture the machine; the run's :class:`Result`.

    The recorded config is ``cfg`` (less its output options) plus ``config``.
    """
    import torch

    if isinstance(cfg.threads, int):
        torch.set_num_threads(cfg.threads)
    recorded = {
        k: v for k, v in asdict(cfg).items() if k not in ("results_dir", "name")
    }
    stem = cfg.name or (f"{name}_quick" if cfg.quick else name)
    return Result(stem, _plain({**recorded, **config}), machine_info())
