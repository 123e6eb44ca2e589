"""Throughput and peak memory of each data-processing stage on simulated data.

The five stages of the ``data_processing`` pipeline (ingestion, validation,
labels, split, encoding) on the ``simulated`` source at several sizes
(default 1 M and 10 M rows). Each stage runs in its own child process that
calls the stage's node functions with the project's datasets
(``ParquetTableDataset``, ``JSONDataset``), as ``kedro run`` does minus the
framework, so its peak RSS (read by the parent with ``os.wait4``) is its
own; the child also reports its RSS after its imports (``baseline_rss_mb``).
``rows_per_s`` = raw rows / seconds in the stage's nodes; ``--chunk-rows``
bounds the rows any stage holds in memory. The peak RSS ratio between the
largest and the smallest size should stay far below the ratio of rows.

    python benchmarks/data_pipeline.py                  # 1 M and 10 M rows
    python benchmarks/data_pipeline.py --sizes 200000,2000000 --chunk-rows 250000
    python benchmarks/data_pipeline.py --quick          # CI smoke (20 k / 60 k rows)

Writes ``results/data_pipeline.json`` (``--quick``: ``data_pipeline_quick.json``).
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import harness
except ModuleNotFoundError:  # loaded by path (the in-process stage test)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import harness
from harness import Table, option

NAME = "data_pipeline"
STAGES = ("ingestion", "validation", "labels", "split", "encoding")
SPLITS = ("train", "valid", "test")


@dataclass
class Options(harness.Config):
    sizes: tuple[int, ...] = option((1_000_000, 10_000_000), "", quick=(20_000, 60_000))
    chunk_rows: int = option(500_000, "rows per chunk", quick=10_000)
    workdir: str | None = option(None, "where the stages write (default: temporary)")
    keep: bool = option(False, "keep the data written")


def _datasets(workdir: Path, chunk_rows: int) -> dict[str, Any]:
    from kedro_datasets.json import JSONDataset
    from kedro_datasets.text import TextDataset

    from mtl_reco.datasets import ParquetTableDataset

    out: dict[str, Any] = {
        "validation_summary": TextDataset(filepath=str(workdir / "validation.md"))
    }
    for name in ("raw_schema", "validation_report", "validation_status", "task_spec",
                 "label_report", "split_plan", "split_report", "feature_encoder",
                 "feature_schema", "encoding_report"):  # fmt: skip
        out[name] = JSONDataset(filepath=str(workdir / f"{name}.json"))
    tables = {"raw_events": "raw_events", "labelled_events": "labelled_events"}
    tables |= {f"{s}_events": s for s in SPLITS}
    tables |= {f"encoded_{s}": f"encoded_{s}" for s in SPLITS}
    for name, stem in tables.items():
        path = str(workdir / f"{stem}.parquet")
        out[name] = ParquetTableDataset(filepath=path, chunk_rows=chunk_rows)
    return out


def _run_stage(stage: str, workdir: Path, rows: int, chunk_rows: int) -> None:
    """One stage's node calls (child process); writes ``.<stage>.result.json``."""
    from mtl_reco.pipelines.data_processing.encoding import nodes as enc
    from mtl_reco.pipelines.data_processing.ingestion import nodes as ing
    from mtl_reco.pipelines.data_processing.labels import nodes as lab
    from mtl_reco.pipelines.data_processing.split import nodes as spl
    from mtl_reco.pipelines.data_processing.validation import nodes as val
    from mtl_reco.processing import config as pc

    if stage == "validation":  # Great Expectations is the stage's own import
        import great_expectations  # noqa: F401
    ds = _datasets(workdir, chunk_rows)
    baseline = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    def load(*names: str) -> list[Any]:
        return [ds[n].load() for n in names]

    def save(**values: Any) -> None:
        for name, value in values.items():
            ds[name].save(value)

    chunk = {"chunk_rows": chunk_rows}
    start = time.perf_counter()
    if stage == "ingestion":
        sources = pc.SourcesConfig(simulated={"n_rows": rows, "seed": 2024})
        table, record = ing.ingest_source("simulated", sources)
        save(raw_events=table, raw_schema=record)
    elif stage == "validation":
        inputs = load("raw_events", "raw_schema")
        report, summary = val.validate_raw_events(*inputs, pc.ValidationConfig(**chunk))
        save(validation_report=report, validation_summary=summary)
        save(validation_status=val.check_validation(report))
    elif stage == "labels":
        inputs = load("raw_events", "raw_schema", "validation_status")
        table, spec, report = lab.engineer_labels(*inputs, pc.LabelsConfig(**chunk))
        save(labelled_events=table, task_spec=spec, label_report=report)
    elif stage == "split":
        inputs = load("labelled_events", "task_spec")
        *tables, plan = spl.split_events(*inputs, pc.SplitConfig(**chunk))
        save(**{f"{s}_events": t for s, t in zip(SPLITS, tables, strict=True)})
        save(split_plan=plan)
        events = load(*(f"{s}_events" for s in SPLITS))
        save(split_report=spl.report_split(*events, *load("task_spec"), plan))
    elif stage == "encoding":
        inputs = load("train_events", "task_spec")
        encoder = enc.fit_encoder(*inputs, pc.EncodingConfig(**chunk))
        save(feature_encoder=encoder)
        for split in SPLITS:
            encoded = enc.apply_encoder(*load(f"{split}_events"), encoder)
            save(**{f"encoded_{split}": encoded})
        (spec,) = load("task_spec")
        save(feature_schema=enc.build_feature_schema(encoder, spec))
        events = load(*(f"{s}_events" for s in SPLITS))
        encoded = load(*(f"encoded_{s}" for s in SPLITS))
        save(encoding_report=enc.report_encoding(encoder, *events, *encoded))
    else:
        raise SystemExit(f"unknown stage {stage!r}")
    result = {"stage_seconds": time.perf_counter() - start, "baseline_rss_mb": baseline}
    (workdir / f".{stage}.result.json").write_text(json.dumps(result))


def measure(stage: str, workdir: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    """Run one stage in a child process; its time and peak RSS."""
    start = time.perf_counter()
    args = [stage, str(workdir), str(rows), str(chunk_rows)]
    proc = subprocess.Popen([sys.executable, __file__, "_stage", *args])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(
            f"stage {stage} failed at {rows} rows (exit {proc.returncode})"
        )
    child = json.loads((workdir / f".{stage}.result.json").read_text())
    seconds = child["stage_seconds"]
    return {
        "stage": stage,
        "seconds": round(seconds, 2),
        "process_seconds": round(time.perf_counter() - start, 2),
        "rows_per_s": round(rows / seconds),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "baseline_rss_mb": child["baseline_rss_mb"],
    }


def report(doc: dict[str, Any]) -> tuple[list[Table], dict[str, Any], list[str]]:
    sizes, ratios = doc["sizes"], doc["peak_rss_ratio"]
    columns = [("stage", "")]
    for size in sizes:
        n = f"{size['rows']:,}"
        columns += [
            (f"{n} rows: rows/s", ",.0f"),
            ("s", ".1f"),
            ("peak RSS MB", ",.0f"),
        ]
    table = Table("", [*columns, ("peak RSS ratio", ".2f")])
    for stage in STAGES:
        row: list[Any] = [stage]
        for size in sizes:
            s = next(s for s in size["stages"] if s["stage"] == stage)
            row += [s["rows_per_s"], s["seconds"], s["peak_rss_mb"]]
        table.rows.append([*row, ratios[stage]])
    rows_ratio = sizes[-1]["rows"] / sizes[0]["rows"]
    figures = {
        "rows_ratio": rows_ratio,
        "rss_ratio_min": min(ratios.values()),
        "rss_ratio_max": max(ratios.values()),
    }
    note = (
        f"Chunk size {doc['chunk_rows']:,} rows; source simulated (default options, "
        "seed 2024); rows/s = raw rows / seconds spent in the stage's nodes. Peak RSS "
        f"ratio: largest vs smallest size (rows ratio {rows_ratio:.1f})."
    )
    return [table], figures, [note]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["_stage"]:  # the child process of one stage
        _run_stage(args[1], Path(args[2]), int(args[3]), int(args[4]))
        return 0
    opts = harness.parse(Options, args, __doc__ or "")
    result = harness.start(NAME, opts)
    root = Path(opts.workdir or tempfile.mkdtemp(prefix="mtl_reco_bench_"))
    sizes = []
    try:
        for rows in opts.sizes:
            workdir = root / f"rows_{rows}"
            workdir.mkdir(parents=True, exist_ok=True)
            stages = []
            for stage in STAGES:
                stages.append(measure(stage, workdir, rows, opts.chunk_rows))
                harness.say(f"{rows:>11,} rows  {stages[-1]}")
            sizes.append({"rows": rows, "stages": stages})
            if not opts.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if not opts.keep and opts.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    peaks = [{s["stage"]: s["peak_rss_mb"] for s in size["stages"]} for size in sizes]
    ratio = {stage: round(peaks[-1][stage] / peaks[0][stage], 2) for stage in STAGES}
    doc = {"chunk_rows": opts.chunk_rows, "sizes": sizes, "peak_rss_ratio": ratio}
    result.results = doc
    result.tables, result.figures, result.notes = report(doc)
    result.write(opts.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
