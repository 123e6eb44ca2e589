"""Generate ``BENCHMARKS.md`` from the JSON files in ``benchmarks/results/``.

One section per benchmark, in the order of issue 5 (Census quality, loss
weighting, training throughput, data-pipeline scale, serving, selection
bias), then the other measurements found there (expert layout, ...). Each
section gives the exact command that wrote the file, the date and machine
recorded in it, one or more tables and a short "what this shows" paragraph
whose figures come from the file. A missing file gives a line saying which
command produces it. A file whose layout a renderer does not know (e.g. a
benchmark that changed its JSON) is rendered generically, never dropped.

``*_quick.json`` files (CI smoke runs) are never reported.

The output depends only on the JSON files (no clock, no machine query), so
running the script twice gives the same bytes.

    python benchmarks/make_report.py                  # writes BENCHMARKS.md
    python benchmarks/make_report.py --check          # exit 1 if it is stale
    python benchmarks/make_report.py --results-dir DIR --output FILE
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
OUTPUT = PROJECT_ROOT / "BENCHMARKS.md"

Renderer = Callable[[Mapping[str, Any]], list[str]]


# -- formatting helpers ----------------------------------------------------------------
def fnum(value: Any, digits: int = 4) -> str:
    """A float with ``digits`` decimals; ``-`` for missing/NaN."""
    if value is None or isinstance(value, bool):
        return "-" if value is None else str(value)
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def fint(value: Any) -> str:
    """A number rounded to an integer with thousands separators."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return "-"
        return f"{round(value):,}"
    return "-" if value is None else str(value)


def fratio(value: Any, digits: int = 2) -> str:
    """``1.23x``."""
    text = fnum(value, digits)
    return text if text == "-" else f"{text}x"


def fpct(value: Any, digits: int = 1) -> str:
    """A share as a percentage."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return "-"
        return f"{100 * value:.{digits}f} %"
    return "-"


def fsci(value: Any) -> str:
    """Scientific notation (parity figures)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.1e}"
    return "-"


def fmeanstd(stats: Any, digits: int = 4) -> str:
    """``mean ± std`` from ``{"mean", "std"}`` (std left out when absent)."""
    if not isinstance(stats, Mapping):
        return fnum(stats, digits)
    mean, std = stats.get("mean"), stats.get("std")
    if mean is None:
        return "-"
    if std is None:
        return fnum(mean, digits)
    return f"{fnum(mean, digits)} ± {fnum(std, digits)}"


def _numeric(cell: str) -> bool:
    text = cell.strip()
    return text == "-" or (bool(text) and (text[0].isdigit() or text[0] in "+-."))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A GitHub markdown table: numeric columns right-aligned, text left."""
    body = [
        [str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows
    ]
    align = []
    for j in range(len(header)):
        column = [row[j] for row in body if j < len(row)]
        numeric = j > 0 and bool(column) and all(_numeric(c) for c in column)
        align.append("---:" if numeric else ":---")
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def dig(data: Any, *path: Any, default: Any = None) -> Any:
    """``data[p0][p1]...`` or ``default`` when any step is missing."""
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return default
    return data


def machine_line(doc: Mapping[str, Any]) -> str:
    """CPU, cores, torch and load recorded in the file."""
    m = doc.get("machine")
    if not isinstance(m, Mapping):
        return "not recorded"
    parts = []
    cpu = m.get("cpu_model") or m.get("processor")
    if cpu:
        parts.append(str(cpu))
    if m.get("logical_cpus") is not None:
        cpus = f"{m['logical_cpus']} logical CPUs"
        if m.get("usable_cpus") not in (None, m["logical_cpus"]):
            cpus += f" ({m['usable_cpus']} usable)"
        parts.append(cpus)
    if m.get("torch"):
        parts.append(f"torch {m['torch']}")
    threads = m.get("torch_threads", m.get("default_threads"))
    if threads is not None:
        parts.append(f"{threads} torch thread(s)")
    if m.get("python"):
        parts.append(f"Python {m['python']}")
    if m.get("platform"):
        parts.append(str(m["platform"]))
    load = m.get("load_average")
    if isinstance(load, list) and load:
        parts.append("load average at start " + " / ".join(fnum(x, 2) for x in load))
    return ", ".join(parts) if parts else "not recorded"


def header_lines(doc: Mapping[str, Any], fallback_command: str) -> list[str]:
    """Command, date and machine of one result file."""
    command = doc.get("command")
    note = "" if command else " (not recorded in the file; the script's usual command)"
    stamp = doc.get("timestamp", "not recorded")
    return [
        f"- **Command:** `{command or fallback_command}`{note}",
        f"- **Date:** {stamp}",
        f"- **Machine:** {machine_line(doc)}",
    ]


# -- generic rendering (unknown layouts) -----------------------------------------------
_BOILERPLATE = {"benchmark", "timestamp", "command", "machine"}


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _flatten(row: Mapping[str, Any], prefix: str = "", depth: int = 2) -> dict:
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and {"mean", "std"} <= set(value):
            out[name] = fmeanstd(value)
        elif _scalar(value):
            out[name] = value
        elif isinstance(value, Mapping) and depth > 1:
            out.update(_flatten(value, f"{name}.", depth - 1))
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return fnum(value, 4) if abs(value) < 1000 else fint(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return fint(value)
    return "-" if value is None else str(value)


def render_generic(doc: Mapping[str, Any], max_columns: int = 12) -> list[str]:
    """Top-level scalars, then a table per list of records."""
    lines: list[str] = []
    scalars = [(k, v) for k, v in doc.items() if k not in _BOILERPLATE and _scalar(v)]
    if scalars:
        lines += table(["field", "value"], [(k, _cell(v)) for k, v in scalars])
        lines.append("")
    for key, value in doc.items():
        if key in _BOILERPLATE:
            continue
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, Mapping) for v in value)
        ):
            flat = [_flatten(v) for v in value]
            columns: list[str] = []
            for row in flat:
                for col in row:
                    if col not in columns:
                        columns.append(col)
            shown = columns[:max_columns]
            lines.append(f"`{key}`:")
            lines.append("")
            lines += table(shown, [[_cell(r.get(c)) for c in shown] for r in flat])
            if len(columns) > max_columns:
                lines.append("")
                lines.append(
                    f"({len(columns) - max_columns} more columns in the JSON: "
                    + ", ".join(f"`{c}`" for c in columns[max_columns:])
                    + ")"
                )
            lines.append("")
        elif (
            isinstance(value, Mapping)
            and value
            and all(isinstance(v, Mapping) for v in value.values())
        ):
            flat = {k: _flatten(v) for k, v in value.items()}
            columns = []
            for row in flat.values():
                for col in row:
                    if col not in columns:
                        columns.append(col)
            if not columns:
                continue
            shown = columns[: max_columns - 1]
            lines.append(f"`{key}`:")
            lines.append("")
            lines += table(
                ["", *shown],
                [[k, *[_cell(r.get(c)) for c in shown]] for k, r in flat.items()],
            )
            lines.append("")
    if not lines:
        lines = ["(No scalar or tabular fields; see the JSON file.)", ""]
    return lines


# -- 1, 2: Census-Income --------------------------------------------------------------
def _auc_stats(value: Any) -> str:
    """``mean ± std (n)`` of ``{"mean", "std", "n"}``."""
    if not isinstance(value, Mapping) or value.get("mean") is None:
        return "-"
    text = fmeanstd(value)
    return f"{text} (n={value['n']})" if value.get("n") is not None else text


def _paper(value: Any) -> str:
    if not isinstance(value, Mapping):
        return "-"
    if value.get("best") is not None or value.get("mean") is not None:
        return f"{fnum(value.get('best'))} / {fnum(value.get('mean'))}"
    return fnum(value.get("reported"))


def _summary_index(doc: Mapping[str, Any], key: str) -> dict[tuple, Any]:
    return {(r[key], r["library"], r["task"]): r for r in doc["summary"]}


def render_census_quality(doc: Mapping[str, Any]) -> list[str]:
    rows = []
    for r in doc["side_by_side"]:
        rows.append(
            [
                r["model"],
                r["task"],
                _auc_stats(r.get("mtl_reco")),
                _auc_stats(r.get("torch_rechub")),
                fnum(r.get("mtl_reco_minus_torch_rechub")),
                _paper(r.get("paper")),
                r.get("paper_source") or "-",
            ]
        )
    lines = [
        "Test AUC, mean ± std over seeds:",
        "",
        *table(
            [
                "model",
                "task",
                "mtl_reco",
                "Torch-RecHub 0.9.0",
                "mtl_reco - Torch-RecHub",
                "paper (best / mean, or reported)",
                "paper source",
            ],
            rows,
        ),
        "",
    ]
    index = _summary_index(doc, "model")
    cost = []
    for model in dict.fromkeys(r["model"] for r in doc["side_by_side"]):
        cells = [model]
        for lib in ("mtl_reco", "torch_rechub"):
            row = next(
                (v for (m, lb, _), v in index.items() if m == model and lb == lib), {}
            )
            cells += [
                fnum(row.get("epochs_run_mean"), 1),
                fnum(row.get("seconds_per_epoch_mean"), 2),
            ]
        cost.append(cells)
    if cost:
        lines += [
            "Training cost (means over seeds):",
            "",
            *table(
                [
                    "model",
                    "mtl_reco epochs",
                    "mtl_reco s/epoch",
                    "Torch-RecHub epochs",
                    "Torch-RecHub s/epoch",
                ],
                cost,
            ),
            "",
        ]
    lines += _census_context(doc)
    return lines


def _census_context(doc: Mapping[str, Any], comparison: bool = True) -> list[str]:
    """Budget and split; with ``comparison`` the note, differences and papers."""
    cfg = doc.get("config", {})
    budget = cfg.get("budget", {})
    split = dig(doc, "data", "split", "rows", default={})
    lines = []
    if budget:
        lines.append(
            f"Budget (both libraries): batch {budget.get('batch_size', '?')}, "
            f"embedding {budget.get('embedding_dim', '?')}, Adam lr "
            f"{budget.get('lr', '?')} (weight decay {budget.get('weight_decay', '?')}"
            f"), at most {budget.get('max_epochs', '?')} epochs, early stopping "
            f"patience {budget.get('patience', '?')} on the validation split; seeds "
            f"{cfg.get('seeds', '?')}. Split rows: "
            + ", ".join(f"{k} {fint(v)}" for k, v in split.items())
            + "."
        )
        lines.append("")
    if doc.get("note") and comparison:
        lines += [str(doc["note"]), ""]
    differences = (cfg.get("differences") or []) if comparison else []
    if differences:
        lines.append("Differences between the two libraries that remain:")
        lines.append("")
        lines += [f"- {d}" for d in differences]
        lines.append("")
    errors = doc.get("errors") or []
    if errors:
        lines.append("Runs that failed:")
        lines.append("")
        lines += table(
            list(errors[0]), [[_cell(v) for v in e.values()] for e in errors]
        )
        lines.append("")
    papers = doc.get("papers")
    if isinstance(papers, Mapping) and papers and comparison:
        lines.append("Papers: " + "; ".join(f"{k}: {v}" for k, v in papers.items()))
        lines.append("")
    return lines


def text_census_quality(doc: Mapping[str, Any]) -> str:
    diffs = [
        r.get("mtl_reco_minus_torch_rechub")
        for r in doc["side_by_side"]
        if isinstance(r.get("mtl_reco_minus_torch_rechub"), int | float)
    ]
    parts = [
        "The same seeded split of the Census-Income training file, the same "
        "encoding and the same training budget for both libraries, several seeds "
        "each."
    ]
    if diffs:
        parts.append(
            f"mtl_reco's mean test AUC minus Torch-RecHub's ranges from "
            f"{min(diffs):+.4f} to {max(diffs):+.4f} over the model/task pairs."
        )
    gaps = []
    for r in doc["side_by_side"]:
        ours = dig(r, "mtl_reco", "mean")
        paper = r.get("paper") or {}
        ref = paper.get("mean", paper.get("reported"))
        if isinstance(ours, int | float) and isinstance(ref, int | float):
            gaps.append(ours - ref)
    if gaps:
        parts.append(
            f"Against the papers' mean (or only) figures the difference is "
            f"{min(gaps):+.4f} to {max(gaps):+.4f}; the papers scored the official "
            "test file, so that comparison is indicative only."
        )
    return " ".join(parts)


def render_loss_weighting(doc: Mapping[str, Any]) -> list[str]:
    index = _summary_index(doc, "strategy")
    tasks = list(dict.fromkeys(t for (_, _, t) in index))
    lines: list[str] = []
    for lib, title in (("mtl_reco", "mtl_reco"), ("torch_rechub", "Torch-RecHub")):
        strategies = list(dict.fromkeys(s for (s, lb, _) in index if lb == lib))
        if not strategies:
            continue
        rows = []
        for strategy in strategies:
            cells = [strategy]
            for task in tasks:
                r = index.get((strategy, lib, task), {})
                cells.append(
                    _auc_stats(
                        {
                            "mean": r.get("test_auc_mean"),
                            "std": r.get("test_auc_std"),
                            "n": r.get("n_seeds"),
                        }
                    )
                )
            for task in tasks:
                r = index.get((strategy, lib, task), {})
                cells.append(
                    fmeanstd(
                        {
                            "mean": r.get("weight_final_mean"),
                            "std": r.get("weight_final_std"),
                        },
                        3,
                    )
                )
            first = index.get((strategy, lib, tasks[0]), {}) if tasks else {}
            cells += [
                fnum(first.get("seconds_per_epoch_mean"), 2),
                fratio(first.get("time_vs_fixed")),
            ]
            rows.append(cells)
        header = [
            "strategy",
            *[f"{t} AUC" for t in tasks],
            *[f"{t} final weight" for t in tasks],
            "s/epoch",
            "time vs fixed",
        ]
        lines += [f"{title}, test AUC (mean ± std over seeds):", ""]
        lines += table(header, rows)
        lines.append("")
    outcomes = doc.get("rechub_outcomes") or []
    if outcomes:
        lines += ["Torch-RecHub's own adaptive methods:", ""]
        lines += table(
            ["strategy", "status", "errors", "note"],
            [
                [
                    o.get("strategy", "-"),
                    o.get("status", "-"),
                    "; ".join(o.get("errors") or []) or "-",
                    o.get("note", "-"),
                ]
                for o in outcomes
            ],
        )
        lines.append("")
    notes = dig(doc, "config", "strategy_notes", default={}) or {}
    if notes:
        lines += [f"- `{k}`: {v}" for k, v in notes.items()]
        lines.append("")
    lines += _census_context(doc, comparison=False)
    return lines


def text_loss_weighting(doc: Mapping[str, Any]) -> str:
    index = _summary_index(doc, "strategy")
    tasks = list(dict.fromkeys(t for (_, _, t) in index))
    parts = [
        "MMoE on the Census split with each of mtl_reco's loss-weighting "
        "strategies under the same budget."
    ]
    for task in tasks:
        scored = [
            (r.get("test_auc_mean"), s)
            for (s, lb, t), r in index.items()
            if lb == "mtl_reco"
            and t == task
            and isinstance(r.get("test_auc_mean"), int | float)
        ]
        if len(scored) > 1:
            lo, hi = min(scored), max(scored)
            parts.append(
                f"{task}: test AUC from {lo[0]:.4f} ({lo[1]}) to {hi[0]:.4f} ({hi[1]})."
            )
    parts.append(
        "Differences smaller than the std over seeds are not evidence that one "
        "strategy is better."
    )
    return " ".join(parts)


# -- 3: training throughput ------------------------------------------------------------
def render_train_throughput(doc: Mapping[str, Any]) -> list[str]:
    results = doc["results"]
    cfg = doc.get("config", {})
    gemm = doc.get("gemm", {})
    rows = []
    for r in results:
        met = dig(r, "targets", "all_met")
        rows.append(
            [
                f"{r['size']} / {r['model']}",
                fint(r.get("batch_size")),
                fint(dig(r, "mtl_reco", "samples_per_s")),
                fint(dig(r, "rechub", "samples_per_s")),
                fratio(r.get("ratio")),
                fint(dig(r, "rechub_prebuilt", "samples_per_s")),
                fratio(r.get("ratio_vs_prebuilt")),
                fnum(dig(r, "mtl_reco", "train_gflops"), 1),
                fpct(r.get("gemm_share")),
                "-" if met is None else ("yes" if met else "no"),
            ]
        )
    lines = table(
        [
            "size / model",
            "batch",
            "mtl_reco samples/s",
            "Torch-RecHub samples/s",
            "ratio",
            "Torch-RecHub prebuilt batches",
            "ratio vs prebuilt",
            "mtl_reco GFLOP/s",
            "share of GEMM",
            "targets met",
        ],
        rows,
    )
    lines.append("")
    lines.append(
        f"GEMM reference: {fnum(gemm.get('best_gflops'), 1)} GFLOP/s best "
        f"(median {fnum(gemm.get('median_gflops'), 1)}), float32 "
        f"{gemm.get('n', '?')}x{gemm.get('n', '?')} matmul with "
        f"{gemm.get('threads', '?')} thread(s), measured in the same run. "
        f"{fint(cfg.get('rows'))} rows x {cfg.get('epochs', '?')} epochs x "
        f"{cfg.get('repeats', '?')} repeats per model; Torch-RecHub "
        f"{doc.get('rechub_version', '?')}."
    )
    lines.append("")
    prof = doc.get("profile")
    profiles = (
        [prof]
        if isinstance(prof, Mapping) and "model" in prof
        else list(prof.values())
        if isinstance(prof, Mapping)
        else []
    )
    for p in profiles:
        shares = p.get("by_part_share") or {}
        if shares:
            top = ", ".join(f"{k} {fpct(v)}" for k, v in list(shares.items())[:6])
            lines.append(
                f"Profile of the {p.get('size', '?')} {p.get('model', '?')} step "
                f"({fnum(p.get('step_ms'), 1)} ms): {top}."
            )
            lines.append("")
    return lines


def text_train_throughput(doc: Mapping[str, Any]) -> str:
    ratios = {}
    for r in doc["results"]:
        ratios.setdefault(r["size"], []).append(r.get("ratio"))
    parts = []
    for size, values in ratios.items():
        vals = [v for v in values if isinstance(v, int | float)]
        if vals:
            parts.append(
                f"{size}: {min(vals):.1f}x to {max(vals):.1f}x Torch-RecHub's samples/s"
            )
    shares = [
        r.get("gemm_share")
        for r in doc["results"]
        if r.get("size") == "heavy" and isinstance(r.get("gemm_share"), int | float)
    ]
    share_txt = (
        f"; the heavy configurations reach {100 * min(shares):.0f}-"
        f"{100 * max(shares):.0f} % of the machine's GEMM speed"
        if shares
        else ""
    )
    return (
        "Both libraries train the same architectures on the same data, batch size, "
        "optimizer and loss weighting in one process. "
        + ("; ".join(parts) if parts else "No ratio recorded")
        + share_txt
        + ". The 'prebuilt' column times Torch-RecHub's model, loss and optimizer "
        "on batches built beforehand, i.e. without its DataLoader: the ratio "
        "against it isolates the model and training-step code from data loading."
    )


# -- 4: data pipeline ------------------------------------------------------------------
def render_data_pipeline(doc: Mapping[str, Any]) -> list[str]:
    results = doc["results"]
    stages: list[str] = []
    for res in results:
        for st in res["stages"]:
            if st["stage"] not in stages:
                stages.append(st["stage"])
    rows = []
    for st in stages:
        row = [st]
        for res in results:
            found = next((s for s in res["stages"] if s["stage"] == st), {})
            row += [
                fint(found.get("rows_per_s")),
                fnum(found.get("seconds"), 1),
                fint(found.get("peak_rss_mb")),
            ]
        ratio = dig(doc, "peak_rss_ratio_largest_vs_smallest", st)
        row.append(fnum(ratio, 2))
        rows.append(row)
    header = ["stage"]
    for res in results:
        n = fint(res["rows"])
        header += [f"{n} rows: rows/s", "s", "peak RSS MB"]
    header.append("peak RSS ratio")
    lines = table(header, rows)
    lines.append("")
    lines.append(
        f"Chunk size {fint(doc.get('chunk_rows'))} rows; source "
        f"{doc.get('source', 'simulated')}; rows/s = "
        f"{doc.get('rows_per_s_definition', 'rows / stage seconds')}. Peak RSS "
        f"ratio: largest vs smallest size (rows ratio "
        f"{fnum(doc.get('rows_ratio_largest_vs_smallest'), 1)})."
    )
    lines.append("")
    return lines


def text_data_pipeline(doc: Mapping[str, Any]) -> str:
    ratios = doc.get("peak_rss_ratio_largest_vs_smallest") or {}
    vals = [v for v in ratios.values() if isinstance(v, int | float)]
    rows_ratio = doc.get("rows_ratio_largest_vs_smallest")
    core = (
        f"With {fnum(rows_ratio, 0)}x more rows, each stage's peak memory grows by "
        f"{min(vals):.2f}x to {max(vals):.2f}x"
        if vals and rows_ratio
        else "Peak memory per stage at each size"
    )
    return (
        core + ": every stage streams its input in bounded chunks (lazy tables "
        "written to parquet chunk by chunk), so the data half of the pipeline does "
        "not need memory proportional to the data. Each stage runs in its own "
        "process, so its peak RSS is its own."
    )


# -- 5: serving ------------------------------------------------------------------------
def render_serving(doc: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    results = doc["results"]
    threads = list(dig(results, 0, "by_threads", default={}) or {})
    batch = dig(doc, "config", "batch_size", default=1024)
    for t in threads:
        lat_rows, thr_rows = [], []
        for r in results:
            e = r["by_threads"].get(t)
            if e is None:
                continue
            lat, thr = e["latency_batch1"], e["throughput"]
            sp = e.get("speedup_onnxruntime_vs_torch", {})
            lat_rows.append(
                [
                    r["model"],
                    fint(lat["torch"]["median_us"]),
                    fint(lat["torch"]["p99_us"]),
                    fint(lat["onnxruntime"]["median_us"]),
                    fint(lat["onnxruntime"]["p99_us"]),
                    fint(dig(lat, "onnx_predictor", "median_us")),
                    fratio(sp.get("latency_median")),
                ]
            )
            thr_rows.append(
                [
                    r["model"],
                    fint(thr["torch"]["rows_per_s"]),
                    fint(thr["onnxruntime"]["rows_per_s"]),
                    fint(dig(thr, "onnx_predictor", "rows_per_s")),
                    fratio(sp.get("throughput")),
                    fsci(r.get("parity_max_abs_diff")),
                ]
            )
        lines.append(f"**{t} thread(s)** - latency at batch 1 (microseconds):")
        lines.append("")
        lines += table(
            [
                "model",
                "PyTorch median",
                "PyTorch p99",
                "ONNX Runtime median",
                "ONNX Runtime p99",
                "OnnxPredictor median",
                "speed-up (median)",
            ],
            lat_rows,
        )
        lines.append("")
        lines.append(f"**{t} thread(s)** - throughput at batch {batch} (rows/s):")
        lines.append("")
        lines += table(
            [
                "model",
                "PyTorch",
                "ONNX Runtime",
                "OnnxPredictor",
                "ONNX Runtime / PyTorch",
                "parity (max abs diff)",
            ],
            thr_rows,
        )
        lines.append("")
    cfg = doc.get("config", {})
    schema = doc.get("schema", {})
    lines.append(
        f"{fint(cfg.get('latency_calls'))} timed calls per variant at batch 1 and "
        f"{fint(cfg.get('throughput_calls'))} at batch {batch}, interleaved in "
        f"{cfg.get('rounds', '?')} rounds after {cfg.get('warmup', '?')} warm-up "
        f"calls; schema of {fint(cfg.get('schema_rows'))} simulated rows "
        f"({schema.get('sparse_fields', '?')} sparse fields, total cardinality "
        f"{fint(schema.get('total_cardinality'))}, "
        f"{schema.get('dense_fields', '?')} dense); ONNX Runtime "
        f"{doc.get('onnxruntime_version', '?')}; {cfg.get('weights', '')}."
    )
    lines.append("")
    variants = doc.get("variants") or {}
    for name, desc in variants.items():
        lines.append(f"- `{name}`: {desc}")
    if variants:
        lines.append("")
    return lines


def text_serving(doc: Mapping[str, Any]) -> str:
    lat, thr, parity = [], [], []
    for r in doc["results"]:
        parity.append(r.get("parity_max_abs_diff"))
        for e in r["by_threads"].values():
            sp = e.get("speedup_onnxruntime_vs_torch", {})
            lat.append(sp.get("latency_median"))
            thr.append(sp.get("throughput"))
    lat = [v for v in lat if isinstance(v, int | float)]
    thr = [v for v in thr if isinstance(v, int | float)]
    parity = [v for v in parity if isinstance(v, int | float)]
    bits = []
    if lat:
        bits.append(
            f"At batch 1 ONNX Runtime answers {min(lat):.1f}x to {max(lat):.1f}x "
            "faster than PyTorch eager (median latency): a single row costs little "
            "arithmetic, so PyTorch's per-operator Python dispatch dominates and "
            "ONNX Runtime's fused graph avoids it"
        )
    if thr:
        bits.append(
            f"at batch 1024, where the matrix multiplications weigh more, the "
            f"throughput ratio is {min(thr):.2f}x to {max(thr):.2f}x"
        )
    text = "; ".join(bits) + "." if bits else ""
    if parity:
        text += (
            f" The exported models score like PyTorch to within {max(parity):.1e} "
            "(largest absolute difference over every output)."
        )
    text += (
        " The OnnxPredictor column adds the library's per-call feed building "
        "(splitting the matrices into per-feature arrays) to the raw session."
    )
    return text.strip()


# -- 6: selection bias -----------------------------------------------------------------
def render_selection_bias(doc: Mapping[str, Any]) -> list[str]:
    summary = doc["summary"]
    truth = summary["pcvr_vs_truth"]
    oracle = summary.get("oracle_pcvr", {})
    models = summary.get("models", {})
    cfg = doc.get("config", {})
    names = {"naive_cvr": "naive CVR (clicked rows only)"}
    order = ["naive_cvr", "esmm"] + [k for k in truth if k not in ("naive_cvr", "esmm")]
    rows = []
    for key in order:
        if key not in truth:
            continue
        t = truth[key]
        label = names.get(key, key)
        if key != "naive_cvr":
            source = "latent pCVR" if key == "esmm" else "pCTCVR / pCTR"
            label = f"{key} ({source})"
        rows.append(
            [
                label,
                fmeanstd(dig(t, "all", "auc_counterfactual")),
                fmeanstd(dig(t, "unclicked", "auc_counterfactual")),
                fmeanstd(dig(t, "all", "spearman")),
                fmeanstd(t.get("auc_clicked_observed")),
                fmeanstd(dig(t, "all", "mean_ratio"), 2),
                fmeanstd(dig(t, "clicked", "mean_ratio"), 2),
                fmeanstd(dig(t, "unclicked", "mean_ratio"), 2),
                fmeanstd(dig(t, "all", "ece")),
            ]
        )
    rows.append(
        [
            "oracle (true pCVR)",
            fmeanstd(dig(oracle, "all", "auc_counterfactual")),
            fmeanstd(dig(oracle, "unclicked", "auc_counterfactual")),
            "1.0000",
            "-",
            "1.00",
            "1.00",
            "1.00",
            "0.0000",
        ]
    )
    lines = [
        "pCVR against the truth on all test impressions (mean ± std over "
        f"{cfg.get('seeds', '?')} seed(s)):",
        "",
        *table(
            [
                "pCVR of",
                "AUC vs counterfactual, all",
                "AUC vs counterfactual, unclicked",
                "Spearman vs true pCVR",
                "AUC clicked rows (observed)",
                "mean pred / true, all",
                "clicked",
                "unclicked",
                "ECE vs true pCVR",
            ],
            rows,
        ),
        "",
    ]
    arch_rows = []
    for key, m in models.items():
        arch_rows.append(
            [
                key,
                fmeanstd(m.get("ctr_auc")),
                fmeanstd(m.get("ctr_oracle_auc")),
                fmeanstd(m.get("ctr_oracle_gap")),
                fmeanstd(m.get("ctcvr_auc")),
                fmeanstd(m.get("ctcvr_oracle_auc")),
                fmeanstd(m.get("ctcvr_oracle_gap")),
                fmeanstd(m.get("cvr_auc_clicked")),
                fmeanstd(m.get("epochs_run"), 1),
            ]
        )
    if arch_rows:
        lines += [
            "Every architecture on the test split (same trainer settings):",
            "",
            *table(
                [
                    "model",
                    "CTR AUC",
                    "oracle",
                    "gap",
                    "CTCVR AUC",
                    "oracle",
                    "gap",
                    "CVR AUC (clicked)",
                    "epochs",
                ],
                arch_rows,
            ),
            "",
        ]
    splits = dig(doc, "runs", 0, "splits", default={})
    split_txt = ", ".join(
        f"{n} {fint(s.get('rows'))} rows / {fint(s.get('clicks'))} clicks / "
        f"{fint(s.get('purchases'))} purchases"
        for n, s in splits.items()
    )
    lines.append(
        f"{fint(cfg.get('rows'))} simulated impressions per seed ({split_txt}, "
        f"first seed); trainer: batch {cfg.get('batch_size', '?')}, lr "
        f"{cfg.get('lr', '?')}, at most {cfg.get('epochs', '?')} epochs with early "
        "stopping on the validation split. Naive CVR: "
        f"{cfg.get('naive_cvr', '?')} (at most {cfg.get('naive_max_epochs', '?')} "
        "epochs). Counterfactual labels: "
        f"{cfg.get('counterfactual_labels', '?')}. ECE: {cfg.get('ece', '?')}."
    )
    lines.append("")
    return lines


def _mean(stats: Any) -> float | None:
    value = stats.get("mean") if isinstance(stats, Mapping) else stats
    return float(value) if isinstance(value, int | float) else None


def text_selection_bias(doc: Mapping[str, Any]) -> str:
    truth = doc["summary"]["pcvr_vs_truth"]
    naive, esmm = truth.get("naive_cvr", {}), truth.get("esmm", {})
    n_auc = _mean(dig(naive, "all", "auc_counterfactual"))
    e_auc = _mean(dig(esmm, "all", "auc_counterfactual"))
    parts = [
        "A CVR label exists only after a click, so real logs cannot say how a CVR "
        "model does on the impressions nobody clicked; the simulator knows every "
        "impression's true pCVR."
    ]
    if n_auc is not None and e_auc is not None:
        verb = "ranks better than" if e_auc > n_auc else "does not rank better than"
        diff = dig(
            doc, "summary", "headline", "esmm_minus_naive_auc_counterfactual_all"
        )
        spread = ""
        if isinstance(diff, Mapping) and diff.get("std") is not None:
            spread = (
                f"; per-seed difference {fmeanstd(diff)} over {diff.get('n')} seeds"
            )
        parts.append(
            f"Over all test impressions ESMM's latent pCVR {verb} the naive model "
            f"trained on clicked rows (mean AUC against counterfactual labels "
            f"{e_auc:.4f} vs {n_auc:.4f}{spread})."
        )
    ratios = {
        name: (
            _mean(dig(t, "clicked", "mean_ratio")),
            _mean(dig(t, "unclicked", "mean_ratio")),
        )
        for name, t in (("naive", naive), ("esmm", esmm))
    }
    if None not in ratios["naive"] and None not in ratios["esmm"]:
        (n_clk, n_unc), (e_clk, e_unc) = ratios["naive"], ratios["esmm"]
        parts.append(
            f"Calibration: the naive model's mean pCVR is {n_clk:.2f}x the truth on "
            f"the clicked impressions it learnt from but {n_unc:.2f}x on the "
            f"unclicked ones (the selection bias); ESMM's is {e_clk:.2f}x and "
            f"{e_unc:.2f}x."
        )
    others = {k: t for k, t in truth.items() if k not in ("naive_cvr", "esmm")}
    aucs = [_mean(dig(t, "all", "auc_counterfactual")) for t in others.values()]
    uncl = [_mean(dig(t, "unclicked", "mean_ratio")) for t in others.values()]
    aucs = [a for a in aucs if a is not None]
    uncl = [u for u in uncl if u is not None]
    if aucs and uncl:
        parts.append(
            "The other architectures, also trained on every impression, imply a "
            f"pCVR (pCTCVR / pCTR) with AUC {min(aucs):.4f} to {max(aucs):.4f} "
            f"against the same labels and {min(uncl):.2f}x to {max(uncl):.2f}x the "
            "truth on unclicked impressions."
        )
    parts.append(
        "No model reaches the oracle. ESMM's pCVR is pCTCVR / pCTR = "
        "P(purchase | click, x), conditioned on the click like the naive model's "
        "target; where the click and the purchase share a cause the features do "
        "not show (the simulator's per-impression intent), that conditional is "
        "above the pCVR the impression would have if it were clicked, so even a "
        "perfect estimate of it over-estimates on unclicked impressions. What "
        "learning from every impression can remove is the other part of the "
        "bias: the naive model extrapolating to the low-pCTR impressions it "
        "rarely saw."
    )
    parts.append(
        "The second table is each architecture's distance to the oracle (the "
        "true pCTR / pCTCVR used as the score on the same labels)."
    )
    return " ".join(parts)


# -- extra: expert layout --------------------------------------------------------------
def render_expert_layout(doc: Mapping[str, Any]) -> list[str]:
    decision = doc["decision"]
    rows = []
    for size, d in decision.items():
        fastest = d.get("fastest", {})
        by_min = d.get("fastest_by_minimum", {})
        vs_list = d.get("auto_ratio_vs_linear_list", {})
        keys = list(fastest)
        rows.append(
            [
                size,
                d.get("auto_layout", "-"),
                ", ".join(f"{k}: {fastest[k]}" for k in keys),
                ", ".join(f"{k}: {by_min.get(k, '-')}" for k in keys),
                ", ".join(f"{k}: {fnum(vs_list.get(k), 2)}" for k in keys),
            ]
        )
    lines = table(
        [
            "size",
            "auto layout",
            "fastest (median)",
            "fastest (minimum)",
            "auto time / per-expert Linear time",
        ],
        rows,
    )
    lines.append("")
    if doc.get("what"):
        lines.append(f"Measured: {doc['what']}.")
        lines.append("")
    return lines


def text_expert_layout(doc: Mapping[str, Any]) -> str:
    return (
        "Which layout of the experts' matrix multiplications the MMoE/PLE layers "
        "use by default ('auto'), checked against the alternatives on full "
        "training steps: a ratio below 1 means the default step is faster than "
        "one plain Linear per expert."
    )


# -- GPU check ------------------------------------------------------------------------
_GPU_SETTINGS = (
    ("fp32", "fp32"),
    ("bf16", "bf16"),
    ("fp32_host", "fp32, host table"),
    ("bf16_host", "bf16, host table"),
    ("bf16_compiled", "bf16, compiled"),
    ("bf16_cudagraphs", "bf16, CUDA graphs"),
)


def _gpu_cell(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return "-"
    if "skipped" in row:
        return "skipped"
    if "error" in row:
        return "error"
    return fint(row.get("samples_per_s"))


def render_gpu_check(doc: Mapping[str, Any]) -> list[str]:
    dev = doc["device"]
    mm = dev.get("matmul", {})
    lines = [
        f"Device: {dev.get('name', dev.get('device'))}, driver {dev.get('driver')}, "
        f"torch {dev.get('torch')}, CUDA {dev.get('torch_cuda')}, Python "
        f"{dev.get('python')}; matmul (n={mm.get('n')}) bf16 "
        f"{fnum(mm.get('bf16_tflops'), 1)} TFLOP/s, fp32 "
        f"{fnum(mm.get('fp32_tflops'), 1)} TFLOP/s.",
        "",
    ]
    agreement = doc.get("agreement", {})
    rows = []
    for arch, entry in agreement.get("models", {}).items():
        fp32, bf16 = entry.get("fp32", {}), entry.get("bf16", {})
        rows.append(
            [
                arch,
                fnum(fp32.get("cpu_valid_mean_auc")),
                fnum(fp32.get("valid_mean_auc")),
                fnum(bf16.get("valid_mean_auc")),
                fnum(fp32.get("tolerance_auc")),
                fnum(fp32.get("cpu_train_loss")),
                fnum(fp32.get("train_loss")),
                fnum(bf16.get("train_loss")),
                "yes" if fp32.get("agree") and bf16.get("agree") else "NO",
            ]
        )
    if rows:
        lines.append(
            f"**CPU/GPU agreement** ({agreement.get('steps')} steps of batch "
            f"{agreement.get('batch_size')}; validation mean AUC on "
            f"{fint(agreement.get('valid_rows'))} rows; rule: {agreement.get('rule')}):"
        )
        lines.append("")
        lines += table(
            [
                "model",
                "AUC CPU",
                "AUC GPU fp32",
                "AUC GPU bf16",
                "AUC tolerance",
                "loss CPU",
                "loss GPU fp32",
                "loss GPU bf16",
                "agree",
            ],
            rows,
        )
        lines.append("")
    through = doc.get("throughput", [])
    for size in ("heavy", "light"):
        here = [r for r in through if r.get("size") == size]
        if not here:
            continue
        batch = next((r["batch_size"] for r in here if "batch_size" in r), None)
        shown = [
            (k, t) for k, t in _GPU_SETTINGS if any(r["setting"] == k for r in here)
        ]
        rows = []
        for arch in dict.fromkeys(r["model"] for r in here):
            cells = {r["setting"]: r for r in here if r["model"] == arch}
            peak = dig(cells, "bf16", "peak_gpu_mem_mb")
            rows.append(
                [arch, *(_gpu_cell(cells.get(k)) for k, _ in shown), fint(peak)]
            )
        lines.append(f"**Training samples/s, {size} size, batch {batch}:**")
        lines.append("")
        lines += table(["model", *(t for _, t in shown), "peak GPU MiB (bf16)"], rows)
        lines.append("")
    onnx = doc.get("onnx")
    if onnx:
        lines.append(
            f"**ONNX parity** ({onnx.get('model')}, {onnx.get('exporter')} exporter, "
            f"{fint(onnx.get('rows'))} rows): max |onnxruntime (CPU) - PyTorch on "
            f"{onnx.get('trained_on')}| = "
            f"{fsci(onnx.get('max_abs_diff_vs_device_torch'))}"
            f", vs PyTorch on the CPU {fsci(onnx.get('max_abs_diff_vs_cpu_torch'))} "
            f"(tolerance {fsci(onnx.get('tolerance'))})."
        )
        lines.append("")
    target = dig(doc, "targets", "heavy_mmoe_bf16_device_table")
    if target and target.get("applies"):
        verdict = "met" if target.get("met") else "missed"
        lines.append(
            f"**Target** heavy MMoE, bf16, table on the GPU, batch "
            f"{target.get('batch_size')}: {fint(target.get('best_samples_per_s'))} "
            f"samples/s ({target.get('best_setting')}) against "
            f"{fint(target.get('target_samples_per_s'))}: {verdict}."
        )
        lines.append("")
    failed = doc.get("failed") or []
    lines.append(
        "All checks passed." if not failed else f"{len(failed)} check(s) failed:"
    )
    lines += [f"- {line[:300]}" for line in failed]
    lines.append("")
    return lines


def text_gpu_check(doc: Mapping[str, Any]) -> str:
    return (
        "One prepared run on a GPU machine: every architecture trained on the GPU "
        "(fp32 and bf16 autocast) agrees with the same run on the CPU within the "
        "seed-to-seed noise, every loss-weighting strategy stays finite there, "
        "training throughput through the real Trainer path with the table on the "
        "GPU or streamed from host memory, eager and compiled, and the "
        "GPU-trained MMoE scores the same through ONNX Runtime on the CPU."
    )


# -- registry --------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    """One known benchmark: its result file, title and renderers."""

    stem: str
    title: str
    command: str
    render: Renderer
    text: Callable[[Mapping[str, Any]], str] | str


SECTIONS: tuple[Section, ...] = (
    Section(
        "census_quality",
        "1. Census-Income quality (MMoE paper setup) vs the papers and Torch-RecHub",
        "python benchmarks/census_quality.py",
        render_census_quality,
        text_census_quality,
    ),
    Section(
        "loss_weighting",
        "2. Loss weighting on Census-Income (MMoE)",
        "python benchmarks/loss_weighting.py",
        render_loss_weighting,
        text_loss_weighting,
    ),
    Section(
        "train_throughput",
        "3. Training throughput: mtl_reco vs Torch-RecHub",
        "python benchmarks/train_throughput.py",
        render_train_throughput,
        text_train_throughput,
    ),
    Section(
        "data_pipeline",
        "4. Data pipeline scale",
        "python benchmarks/data_pipeline.py",
        render_data_pipeline,
        text_data_pipeline,
    ),
    Section(
        "serving",
        "5. Serving: ONNX Runtime vs PyTorch eager",
        "python benchmarks/serving.py",
        render_serving,
        text_serving,
    ),
    Section(
        "selection_bias",
        "6. Sample selection bias, checked against the true pCVR",
        "python benchmarks/selection_bias.py",
        render_selection_bias,
        text_selection_bias,
    ),
    Section(
        "gpu_check",
        "7. GPU check: CUDA training, bf16, torch.compile, throughput, ONNX parity",
        "python benchmarks/gpu_check.py",
        render_gpu_check,
        text_gpu_check,
    ),
    Section(
        "expert_layout",
        "Expert layout (MMoE training step)",
        "python benchmarks/expert_layout.py",
        render_expert_layout,
        text_expert_layout,
    ),
)


def _anchor(title: str) -> str:
    keep = [c for c in title.lower() if c.isalnum() or c in " -_"]
    return "".join(keep).replace(" ", "-")


def load_results(results_dir: Path) -> dict[str, Any]:
    """Every ``<stem>.json`` in ``results_dir`` except ``*_quick.json``.

    An unreadable file maps to the error message (a string).
    """
    found: dict[str, Any] = {}
    for path in sorted(results_dir.glob("*.json")):
        if path.stem.endswith("_quick"):
            continue
        try:
            found[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            found[path.stem] = f"could not be read: {type(exc).__name__}: {exc}"
    return found


def _section_body(
    stem: str,
    doc: Any,
    command: str,
    render: Renderer,
    text: Callable[[Mapping[str, Any]], str] | str,
) -> list[str]:
    rel = f"benchmarks/results/{stem}.json"
    if isinstance(doc, str):
        return [f"`{rel}` {doc}. Re-run `{command}`.", ""]
    if not isinstance(doc, Mapping):
        return [f"`{rel}` does not hold a JSON object. Re-run `{command}`.", ""]
    lines = header_lines(doc, command)
    lines.append("")
    if doc.get("quick"):
        lines += ["**Note:** this file comes from a `--quick` run.", ""]
    try:
        body = render(doc)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        body = [
            f"(The layout of `{rel}` is not the one this report knows "
            f"({type(exc).__name__}: {exc}); shown generically.)",
            "",
            *render_generic(doc),
        ]
        text = ""
    lines += body
    try:
        paragraph = text(doc) if callable(text) else text
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        paragraph = ""
    if paragraph:
        lines += [f"**What this shows.** {paragraph}", ""]
    return lines


def build_report(results_dir: Path = RESULTS_DIR) -> str:
    """The whole markdown document."""
    results = load_results(results_dir)
    known = {s.stem for s in SECTIONS}
    others = [stem for stem in results if stem not in known]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/make_report.py` from "
        "`benchmarks/results/*.json`; do not edit by hand. How to run each "
        "benchmark and how long it takes: [benchmarks/README.md]"
        "(benchmarks/README.md). Timings depend on the machine and its load at "
        "the time; each section says which machine and when.",
        "",
        "## Contents",
        "",
    ]
    for s in SECTIONS:
        state = "" if s.stem in results else " (not run yet)"
        lines.append(f"- [{s.title}](#{_anchor(s.title)}){state}")
    for stem in others:
        lines.append(f"- [Other: {stem}](#{_anchor('Other: ' + stem)})")
    lines.append("")
    for s in SECTIONS:
        lines += [f"## {s.title}", ""]
        if s.stem not in results:
            lines += [
                f"Not run yet: `{s.command}` writes "
                f"`benchmarks/results/{s.stem}.json`.",
                "",
            ]
            continue
        lines += _section_body(s.stem, results[s.stem], s.command, s.render, s.text)
    for stem in others:
        lines += [f"## Other: {stem}", ""]
        command = f"python benchmarks/{stem}.py"
        lines += _section_body(stem, results[stem], command, render_generic, "")
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the output file differs from the report",
    )
    args = parser.parse_args(argv)
    report = build_report(args.results_dir)
    if args.check:
        current = (
            args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        )
        if current != report:
            print(f"{args.output} is out of date; run benchmarks/make_report.py")
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(report, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
