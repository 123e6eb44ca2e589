"""Throughput and peak memory of each data-processing stage on simulated data.

Runs the five stages of the ``data_processing`` pipeline (ingestion,
validation, labels, split, encoding) on the ``simulated`` source at several
sizes (default 1 M and 10 M rows). Each stage runs in its own child process
that calls the stage's Kedro node functions with the project's datasets
(``ParquetTableDataset`` / ``json.JSONDataset``), exactly as ``kedro run``
does minus the framework, so the peak RSS of a stage is its own (measured by
the parent with ``os.wait4``). The child also reports the RSS it had after
its imports (``baseline_rss_mb``).

Writes ``benchmarks/results/data_pipeline.json``: per size and stage the
wall time, rows/s (raw rows / stage seconds) and peak RSS, plus the ratio of
peak RSS between the largest and the smallest size per stage (target: far
below the ratio of rows).

Usage::

    python benchmarks/data_pipeline.py                  # 1 M and 10 M rows
    python benchmarks/data_pipeline.py --sizes 200000 2000000
    python benchmarks/data_pipeline.py --quick          # CI smoke test

``--quick`` writes ``data_pipeline_quick.json`` so it never replaces the
real figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STAGES = ("ingestion", "validation", "labels", "split", "encoding")
SPLITS = ("train", "valid", "test")


# -- child side: one stage --------------------------------------------------------


def _datasets(workdir: Path, chunk_rows: int) -> dict[str, Any]:
    from kedro_datasets.json import JSONDataset
    from kedro_datasets.text import TextDataset

    from mtl_reco.datasets import ParquetTableDataset

    def parquet(rel: str) -> ParquetTableDataset:
        return ParquetTableDataset(filepath=str(workdir / rel), chunk_rows=chunk_rows)

    def js(rel: str) -> JSONDataset:
        return JSONDataset(filepath=str(workdir / rel))

    out: dict[str, Any] = {
        "raw_events": parquet("raw_events.parquet"),
        "raw_schema": js("raw_schema.json"),
        "validation_report": js("validation_report.json"),
        "validation_summary": TextDataset(filepath=str(workdir / "validation.md")),
        "validation_status": js("validation_status.json"),
        "labelled_events": parquet("labelled_events.parquet"),
        "task_spec": js("task_spec.json"),
        "label_report": js("label_report.json"),
        "split_plan": js("split_plan.json"),
        "split_report": js("split_report.json"),
        "feature_encoder": js("feature_encoder.json"),
        "feature_schema": js("feature_schema.json"),
        "encoding_report": js("encoding_report.json"),
    }
    for split in SPLITS:
        out[f"{split}_events"] = parquet(f"{split}.parquet")
        out[f"encoded_{split}"] = parquet(f"encoded_{split}.parquet")
    return out


def _run_stage(stage: str, workdir: Path, rows: int, chunk_rows: int) -> None:
    from mtl_reco.pipelines.data_processing.encoding import nodes as enc
    from mtl_reco.pipelines.data_processing.ingestion import nodes as ing
    from mtl_reco.pipelines.data_processing.labels import nodes as lab
    from mtl_reco.pipelines.data_processing.split import nodes as spl
    from mtl_reco.pipelines.data_processing.validation import nodes as val
    from mtl_reco.processing.config import (
        EncodingConfig,
        LabelsConfig,
        SourcesConfig,
        SplitConfig,
        ValidationConfig,
    )

    if stage == "validation":  # Great Expectations is imported by the stage
        import great_expectations  # noqa: F401
    ds = _datasets(workdir, chunk_rows)
    baseline = _rss_mb()  # after every import, before any row is touched

    def load(name: str) -> Any:
        return ds[name].load()

    start = time.perf_counter()
    if stage == "ingestion":
        sources = SourcesConfig(simulated={"n_rows": rows, "seed": 2024})
        table, record = ing.ingest_source("simulated", sources)
        ds["raw_events"].save(table)
        ds["raw_schema"].save(record)
    elif stage == "validation":
        report, summary = val.validate_raw_events(
            load("raw_events"),
            load("raw_schema"),
            ValidationConfig(chunk_rows=chunk_rows),
        )
        ds["validation_report"].save(report)
        ds["validation_summary"].save(summary)
        ds["validation_status"].save(val.check_validation(report))
    elif stage == "labels":
        table, spec, report = lab.engineer_labels(
            load("raw_events"),
            load("raw_schema"),
            load("validation_status"),
            LabelsConfig(chunk_rows=chunk_rows),
        )
        ds["labelled_events"].save(table)
        ds["task_spec"].save(spec)
        ds["label_report"].save(report)
    elif stage == "split":
        *tables, plan = spl.split_events(
            load("labelled_events"),
            load("task_spec"),
            SplitConfig(chunk_rows=chunk_rows),
        )
        for split, table in zip(SPLITS, tables, strict=True):
            ds[f"{split}_events"].save(table)
        ds["split_plan"].save(plan)
        ds["split_report"].save(
            spl.report_split(
                *(load(f"{s}_events") for s in SPLITS), load("task_spec"), plan
            )
        )
    elif stage == "encoding":
        encoder = enc.fit_encoder(
            load("train_events"),
            load("task_spec"),
            EncodingConfig(chunk_rows=chunk_rows),
        )
        ds["feature_encoder"].save(encoder)
        for split in SPLITS:
            ds[f"encoded_{split}"].save(
                enc.apply_encoder(load(f"{split}_events"), encoder)
            )
        ds["feature_schema"].save(enc.build_feature_schema(encoder, load("task_spec")))
        ds["encoding_report"].save(
            enc.report_encoding(
                encoder,
                *(load(f"{s}_events") for s in SPLITS),
                *(load(f"encoded_{s}") for s in SPLITS),
            )
        )
    else:
        raise SystemExit(f"unknown stage {stage!r}")
    seconds = time.perf_counter() - start
    result = {"stage_seconds": seconds, "baseline_rss_mb": baseline}
    (workdir / f".{stage}.result.json").write_text(json.dumps(result))


def _rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# -- parent side ---------------------------------------------------------------


def _measure(stage: str, workdir: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--stage",
        stage,
        "--workdir",
        str(workdir),
        "--rows",
        str(rows),
        "--chunk-rows",
        str(chunk_rows),
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"stage {stage} failed at {rows} rows (exit {proc.returncode})"
        )
    child = json.loads((workdir / f".{stage}.result.json").read_text())
    seconds = child["stage_seconds"]
    return {
        "stage": stage,
        "seconds": round(seconds, 2),
        "process_seconds": round(wall, 2),
        "rows_per_s": round(rows / seconds) if seconds > 0 else None,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "baseline_rss_mb": child["baseline_rss_mb"],
    }


def _sizes_on_disk(workdir: Path) -> dict[str, float]:
    return {
        p.name: round(p.stat().st_size / 2**20, 1)
        for p in sorted(workdir.glob("*.parquet"))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--chunk-rows", type=int, default=500_000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the data written")
    parser.add_argument(
        "--out", default=None, help="result file stem (data_pipeline[_quick])"
    )
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.stage:  # child process
        _run_stage(args.stage, args.workdir, args.rows, args.chunk_rows)
        return

    sizes = [20_000, 60_000] if args.quick else args.sizes
    chunk_rows = 10_000 if args.quick else args.chunk_rows
    root = args.workdir or Path(tempfile.mkdtemp(prefix="mtl_reco_bench_"))
    results = []
    try:
        for rows in sizes:
            workdir = root / f"rows_{rows}"
            workdir.mkdir(parents=True, exist_ok=True)
            stages = []
            for stage in STAGES:
                entry = _measure(stage, workdir, rows, chunk_rows)
                stages.append(entry)
                print(
                    f"{rows:>11,} rows  {stage:<10} {entry['seconds']:>8.1f} s  "
                    f"{entry['rows_per_s'] or 0:>11,} rows/s  "
                    f"peak RSS {entry['peak_rss_mb']:>7.1f} MB",
                    flush=True,
                )
            results.append(
                {"rows": rows, "stages": stages, "parquet_mb": _sizes_on_disk(workdir)}
            )
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)

    small, large = results[0], results[-1]
    ratio = {
        a["stage"]: round(b["peak_rss_mb"] / a["peak_rss_mb"], 2)
        for a, b in zip(small["stages"], large["stages"], strict=True)
    }
    payload = {
        "quick": args.quick,
        "sizes": sizes,
        "chunk_rows": chunk_rows,
        "source": "simulated (default options, seed 2024)",
        "rows_per_s_definition": "raw rows / seconds spent in the stage's nodes",
        "results": results,
        "peak_rss_ratio_largest_vs_smallest": ratio,
        "rows_ratio_largest_vs_smallest": large["rows"] / small["rows"],
    }
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common

    payload["machine"] = _common.machine_info()
    stem = args.out or ("data_pipeline_quick" if args.quick else "data_pipeline")
    path = _common.write_result(stem, payload)
    print(f"peak RSS ratio {large['rows']:,} vs {small['rows']:,} rows: {ratio}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
