"""Smoke test of benchmarks/data_pipeline.py: every stage's node calls, in process."""

from __future__ import annotations

import importlib.util
import json

from .conftest import PROJECT_ROOT


def test_benchmark_stages_run_in_order(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "bench_data_pipeline", PROJECT_ROOT / "benchmarks" / "data_pipeline.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for stage in bench.STAGES:
        bench._run_stage(stage, tmp_path, rows=3000, chunk_rows=1000)
        result = json.loads((tmp_path / f".{stage}.result.json").read_text())
        assert result["stage_seconds"] > 0
    schema = json.loads((tmp_path / "feature_schema.json").read_text())
    assert [t["name"] for t in schema["tasks"]] == ["ctr", "ctcvr"]
    report = json.loads((tmp_path / "encoding_report.json").read_text())
    assert sum(s["rows"] for s in report["splits"].values()) == 3000
