"""Smoke test of ``benchmarks/serving.py --quick`` (subprocess).

The quick run exports one architecture (ESMM, whose latent pCVR output is
the extra case) to ONNX and times PyTorch eager, a raw ONNX Runtime session
and ``OnnxPredictor`` at batch 1 and batch 1024 with one thread. The test
checks that the JSON is written and sane (positive finite timings,
consistent ratios, parity within the export tolerance) and that
``make_report.py`` renders it. Timings are not asserted (DESIGN section 6).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from _smoke import load_make_report, quick_json_once

SCRIPT = "benchmarks/serving.py"  # relative: the JSON records this command
VARIANTS = ("torch", "onnxruntime", "onnx_predictor")
Quick = tuple[Path, dict[str, Any]]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Quick:
    return quick_json_once(tmp_path_factory, SCRIPT, ())


def test_header_and_exports(quick: Quick) -> None:
    _, doc = quick
    assert doc["benchmark"] == "serving_quick" and doc["timestamp"]
    assert "--quick" in doc["command"]
    assert doc["config"]["quick"] is True and doc["config"]["threads"] == [1]
    assert doc["machine"]["torch"] and doc["machine"]["peak_rss_mb"] > 0
    results = doc["results"]
    assert results["onnxruntime_version"]
    assert results["schema"]["sparse_fields"] == 23
    assert results["schema"]["dense_fields"] == 8
    (r,) = results["records"]
    assert r["model"] == "esmm" and r["outputs"] == ["ctr", "ctcvr", "cvr"]
    assert r["n_parameters"] > 0 and r["onnx_bytes"] > 0
    assert r["exporter"] in ("dynamo", "legacy")
    assert 0 <= r["parity_max_abs_diff"] <= 1e-5
    assert set(r["parity_by_batch_size"]) == {"1", "1024"}
    assert r["parity_max_abs_diff"] == max(r["parity_by_batch_size"].values())


def test_latency_and_throughput_are_sane(quick: Quick) -> None:
    _, doc = quick
    cfg = doc["config"]
    for r in doc["results"]["records"]:
        entry = r["by_threads"]["1"]
        for variant in VARIANTS:
            lat = entry["latency_us"][variant]
            assert lat["calls"] >= cfg["latency_calls"] // cfg["rounds"] * cfg["rounds"]
            for key in ("median", "p90", "p99", "mean", "min"):
                assert lat[key] > 0 and math.isfinite(lat[key]), (variant, key)
            assert lat["min"] <= lat["median"] <= lat["p99"]
            thr = entry["throughput"][variant]
            assert thr["rows_per_s"] == pytest.approx(1024 / (thr["median_ms"] / 1e3))
            assert thr["rows_per_s_mean"] > 0
        lat, thr = entry["latency_us"], entry["throughput"]
        assert entry["speedup_latency"] == pytest.approx(
            lat["torch"]["median"] / lat["onnxruntime"]["median"]
        )
        assert entry["speedup_throughput"] == pytest.approx(
            thr["onnxruntime"]["rows_per_s"] / thr["torch"]["rows_per_s"]
        )


def test_report_renders_it(quick: Quick, tmp_path: Path) -> None:
    path, doc = quick
    assert {"latency_speedup_min", "parity_max"} <= set(doc["figures"])
    (tmp_path / "serving.json").write_bytes(path.read_bytes())
    report = load_make_report("make_report_for_serving").build_report(tmp_path)
    section = report.split("## 6. Serving")[1].split("\n## ")[0]
    assert "| esmm |" in section
    assert "PyTorch median" in section and "ONNX Runtime / PyTorch" in section
    assert "python benchmarks/serving.py --quick" in section
    assert "**What this shows.**" in section
