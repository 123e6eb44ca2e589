"""Smoke test of ``benchmarks/serving.py --quick`` (subprocess).

The quick run exports one architecture (ESMM, whose latent pCVR output is
the extra case) to ONNX and times PyTorch eager, a raw ONNX Runtime
session and ``OnnxPredictor`` at batch 1 and batch 1024 with one thread. The
test checks that the JSON is written and sane (positive finite timings,
consistent ratios, parity within the export tolerance) and that
``make_report.py`` renders it with its dedicated renderer. Timings are not
asserted (DESIGN section 6).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from _smoke import load_make_report, quick_json_once

SCRIPT = "benchmarks/serving.py"  # relative: the JSON records this command
VARIANTS = ("torch", "onnxruntime", "onnx_predictor")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return quick_json_once(tmp_path_factory, SCRIPT, ())


def test_header(quick: tuple[Path, dict[str, Any]]) -> None:
    _, doc = quick
    assert doc["benchmark"] == "serving_quick"
    assert doc["timestamp"]
    assert "--quick" in doc["command"]
    assert doc["config"]["quick"] is True
    assert doc["config"]["threads"] == [1]
    assert doc["machine"]["torch"]
    assert doc["onnxruntime_version"]
    assert doc["peak_rss_mb"] > 0
    assert doc["schema"]["sparse_fields"] == 23
    assert doc["schema"]["dense_fields"] == 8


def test_models_exported_with_parity(quick: tuple[Path, dict[str, Any]]) -> None:
    _, doc = quick
    models = {r["model"]: r for r in doc["results"]}
    assert set(models) == {"esmm"}
    assert models["esmm"]["outputs"] == ["ctr", "ctcvr", "cvr"]
    for name, r in models.items():
        assert r["n_parameters"] > 0, name
        assert r["onnx_bytes"] > 0, name
        assert r["exporter"] in ("dynamo", "legacy"), name
        assert 0 <= r["parity_max_abs_diff"] <= 1e-5, (name, r["parity_max_abs_diff"])
        assert set(r["parity_by_batch_size"]) == {"1", "1024"}
        assert r["parity_max_abs_diff"] == max(r["parity_by_batch_size"].values())


def test_latency_and_throughput_are_sane(quick: tuple[Path, dict[str, Any]]) -> None:
    _, doc = quick
    cfg = doc["config"]
    for r in doc["results"]:
        entry = r["by_threads"]["1"]
        for variant in VARIANTS:
            lat = entry["latency_batch1"][variant]
            assert lat["calls"] >= cfg["latency_calls"] // cfg["rounds"] * cfg["rounds"]
            for key in ("median_us", "p90_us", "p99_us", "mean_us", "min_us"):
                assert lat[key] > 0 and math.isfinite(lat[key]), (variant, key)
            assert lat["min_us"] <= lat["median_us"] <= lat["p99_us"]
            thr = entry["throughput"][variant]
            assert thr["batch_size"] == 1024
            assert thr["rows_per_s"] > 0 and math.isfinite(thr["rows_per_s"])
            assert thr["rows_per_s"] == pytest.approx(
                1024 / (thr["median_ms"] / 1e3), rel=1e-9
            )
            assert thr["rows_per_s_mean"] > 0
        speed = entry["speedup_onnxruntime_vs_torch"]
        lat = entry["latency_batch1"]
        assert speed["latency_median"] == pytest.approx(
            lat["torch"]["median_us"] / lat["onnxruntime"]["median_us"], rel=1e-9
        )
        thr = entry["throughput"]
        assert speed["throughput"] == pytest.approx(
            thr["onnxruntime"]["rows_per_s"] / thr["torch"]["rows_per_s"], rel=1e-9
        )


def test_report_renders_it(quick: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, _ = quick
    (tmp_path / "serving.json").write_bytes(path.read_bytes())
    report = load_make_report("make_report_for_serving").build_report(tmp_path)
    section = report.split("## 5. Serving")[1].split("\n## ")[0]
    assert "is not the one this report knows" not in section
    assert "| esmm |" in section
    assert "PyTorch median" in section and "ONNX Runtime / PyTorch" in section
    assert "python benchmarks/serving.py --quick" in section
    assert "**What this shows.**" in section
