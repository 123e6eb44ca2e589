"""Smoke tests of ``benchmarks/train_throughput.py --quick`` (subprocess).

The quick run compares both libraries at tiny sizes (both size classes, all
five architectures, the ``default`` and ``kernels`` settings, the heavy
profile); the test checks that the JSON is written and consistent. Timings
are not asserted (DESIGN §6: measure in ``benchmarks/``, never in timed
tests), only their consistency. A second run asks for the ``compile``
setting on one tiny model: it is measured, or it fails with a one-line
reason while the rest of the run goes on.

One torch thread: CI runs pytest with two workers on two cores. Needs
Torch-RecHub (the ``bench`` extra).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from _smoke import RECHUB_HINT, ROOT, load_make_report, quick_json_once, run_script

SCRIPT = "benchmarks/train_throughput.py"
ARCHS = {"shared_bottom", "mmoe", "ple", "aitm", "esmm"}
EXPERTS = {"mmoe", "ple"}
Quick = tuple[Path, dict[str, Any]]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Quick:
    return quick_json_once(tmp_path_factory, SCRIPT, ("--threads", "1", "--profile"))


def test_header(quick: Quick) -> None:
    _, doc = quick
    assert doc["benchmark"] == "train_throughput_quick"
    assert doc["timestamp"] and "--quick" in doc["command"]
    assert doc["config"]["quick"] is True and doc["config"]["threads"] == 1
    assert doc["config"]["settings"] == ["default", "kernels"]
    assert doc["results"]["rechub_version"] == "0.9.0"
    assert doc["machine"]["torch"] and doc["machine"]["peak_rss_mb"] > 0
    gemm = doc["results"]["gemm"]
    assert 0 < gemm["median_gflops"] <= gemm["best_gflops"] and gemm["threads"] == 1


def test_every_size_model_and_setting(quick: Quick) -> None:
    _, doc = quick
    records = doc["results"]["records"]
    assert {(r["size"], r["model"]) for r in records} == {
        (s, m) for s in ("light", "heavy") for m in ARCHS
    }
    for r in records:
        expected = {"default", "kernels"} if r["model"] in EXPERTS else {"default"}
        assert set(r["settings"]) == expected, r["model"]
        assert r["errors"] == {}


def test_rates_ratios_and_work(quick: Quick) -> None:
    _, doc = quick
    for r in doc["results"]["records"]:
        label = f"{r['size']}/{r['model']}"
        theirs, prebuilt = r["rechub"], r["rechub_prebuilt"]
        for name, e in r["settings"].items():
            rate = e["samples_per_s"]
            assert rate > 0 and math.isfinite(rate), (label, name)
            assert e["samples_per_s_best"] >= rate
            assert e["ratio"] == pytest.approx(rate / theirs["samples_per_s"])
            assert e["ratio_vs_prebuilt"] == pytest.approx(
                rate / prebuilt["samples_per_s"]
            )
            # the same work for both libraries (Torch-RecHub may drop one row)
            assert 0 <= e["samples_per_run"] - theirs["samples_per_run"] <= 1, label
            assert isinstance(e["targets_met"], bool)


def test_flops_and_gemm_share(quick: Quick) -> None:
    _, doc = quick
    best = doc["results"]["gemm"]["best_gflops"]
    for r in doc["results"]["records"]:
        flops = r["flops_per_sample"]
        # the formula agrees with FlopCounterMode on a real forward pass
        assert r["flops_per_sample_counted"] == pytest.approx(flops, rel=0.01)
        for e in r["settings"].values():
            gflops = 3 * flops * e["samples_per_s"] / 1e9
            assert e["train_gflops"] == pytest.approx(gflops)
            assert e["gemm_share"] == pytest.approx(gflops / best)
            assert 0 < e["gemm_share"] < 1.5, (r["model"], e["gemm_share"])


def test_loader_profile_and_report(quick: Quick, tmp_path: Path) -> None:
    path, doc = quick
    results = doc["results"]
    assert set(results["loader_only"]) == {"light", "heavy"}
    assert all(v > 0 for v in results["loader_only"].values())
    assert set(results["profile"]) == EXPERTS
    for name, prof in results["profile"].items():
        assert prof["model"] == name and prof["step_ms"] > 0
        parts = prof["by_part_share"]
        assert {"experts", "embedding", "gates", "towers", "optimizer"} <= set(parts)
        for key in ("by_part_share", "by_phase_share"):
            assert sum(prof[key].values()) == pytest.approx(1.0, abs=0.01), key
    (table,) = doc["tables"]
    assert len(table["rows"]) == sum(len(r["settings"]) for r in results["records"])
    assert {"light_ratio_min", "heavy_share_max"} <= set(doc["figures"])
    (tmp_path / "train_throughput.json").write_bytes(path.read_bytes())
    report = load_make_report("make_report_throughput").build_report(tmp_path)
    section = report.split("## 3. Training throughput")[1].split("\n## ")[0]
    assert "| heavy / mmoe | kernels |" in section
    assert "**What this shows.**" in section and "Profile of the heavy ple" in section


def test_compile_is_measured_or_refused_in_one_line(tmp_path: Path) -> None:
    cmd = [
        sys.executable, str(ROOT / SCRIPT), "--quick", "--threads", "1",
        "--sizes", "light", "--models", "shared_bottom", "--rows", "512",
        "--settings", "default,compile", "--results-dir", str(tmp_path),
    ]  # fmt: skip
    run_script(cmd, timeout=600, hint=RECHUB_HINT)
    doc = json.loads((tmp_path / "train_throughput_quick.json").read_text())
    (record,) = doc["results"]["records"]
    assert "default" in record["settings"]
    if "compile" in record["settings"]:
        assert record["settings"]["compile"]["samples_per_s"] > 0
        return
    why = record["errors"].get("compile") or " ".join(doc["results"]["setting_notes"])
    assert why and "\n" not in why
