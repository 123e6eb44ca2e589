"""Smoke test of ``benchmarks/train_throughput.py --quick`` (subprocess).

It runs the whole comparison at tiny sizes (both size classes, all five
architectures, both libraries, the heavy-MMoE profile) and checks that the
JSON is written and sane. Timings are not asserted (DESIGN §6: measure in
``benchmarks/``, never in timed tests), only their consistency.

One torch thread: CI runs pytest with two workers on two cores, and two
processes with two OpenMP threads each on two cores stall each other badly.
Needs Torch-RecHub (the ``bench`` extra).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import pytest
from _smoke import RECHUB_HINT, ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "train_throughput.py"
ARCHS = {"shared_bottom", "mmoe", "ple", "aitm", "esmm"}
VARIANTS = ("mtl_reco", "rechub", "rechub_prebuilt")


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("train_throughput")
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--threads",
        "1",
        "--profile",
        "--results-dir",
        str(out),
    ]
    proc = run_script(cmd, timeout=600, hint=RECHUB_HINT)
    path = out / "train_throughput_quick.json"
    assert path.is_file(), f"no JSON written; stdout:\n{proc.stdout[-4000:]}"
    payload: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return payload


def test_header_fields(quick_result: dict[str, Any]) -> None:
    assert quick_result["benchmark"] == "train_throughput_quick"
    assert quick_result["timestamp"]
    assert "--quick" in quick_result["command"]
    assert quick_result["config"]["quick"] is True
    assert quick_result["config"]["threads"] == 1
    assert quick_result["rechub_version"] == "0.9.0"
    assert quick_result["machine"]["torch"]
    assert quick_result["peak_rss_mb"] > 0


def test_gemm_reference_is_positive(quick_result: dict[str, Any]) -> None:
    gemm = quick_result["gemm"]
    assert gemm["best_gflops"] > 0
    assert 0 < gemm["median_gflops"] <= gemm["best_gflops"]
    assert gemm["threads"] == 1


def test_every_size_and_model_measured(quick_result: dict[str, Any]) -> None:
    seen = {(r["size"], r["model"]) for r in quick_result["results"]}
    assert seen == {(s, m) for s in ("light", "heavy") for m in ARCHS}


def test_samples_per_second_and_ratio(quick_result: dict[str, Any]) -> None:
    for r in quick_result["results"]:
        label = f"{r['size']}/{r['model']}"
        for variant in VARIANTS:
            rate = r[variant]["samples_per_s"]
            assert rate > 0 and math.isfinite(rate), (label, variant, rate)
            assert r[variant]["samples_per_run"] > 0, (label, variant)
        ours, theirs = r["mtl_reco"]["samples_per_s"], r["rechub"]["samples_per_s"]
        assert r["ratio"] == pytest.approx(ours / theirs, rel=1e-9), label
        prebuilt = r["rechub_prebuilt"]["samples_per_s"]
        assert r["ratio_vs_prebuilt"] == pytest.approx(ours / prebuilt, rel=1e-9)
        # Same amount of work for both libraries (Torch-RecHub may drop one
        # row to avoid its 1-row BatchNorm crash).
        ours_n = r["mtl_reco"]["samples_per_run"]
        theirs_n = r["rechub"]["samples_per_run"]
        assert 0 <= ours_n - theirs_n <= r["epochs"], label


def test_flops_and_gemm_share(quick_result: dict[str, Any]) -> None:
    best = quick_result["gemm"]["best_gflops"]
    for r in quick_result["results"]:
        label = f"{r['size']}/{r['model']}"
        flops = r["fwd_matmul_flops_per_sample"]
        assert flops > 0, label
        # The analytic formula agrees with torch's FlopCounterMode (which
        # does not count a mixture over a single expert, lowered to a mul).
        assert r["fwd_matmul_flops_per_sample_counted"] == pytest.approx(
            flops, rel=0.01
        ), label
        assert r["train_flops_per_sample"] == 3 * flops
        gflops = r["mtl_reco"]["train_gflops"]
        expected = 3 * flops * r["mtl_reco"]["samples_per_s"] / 1e9
        assert gflops == pytest.approx(expected, rel=1e-9), label
        assert r["gemm_share"] == pytest.approx(gflops / best, rel=1e-9), label
        assert 0 < r["gemm_share"] < 1.5, (label, r["gemm_share"])


def test_targets_are_reported(quick_result: dict[str, Any]) -> None:
    for r in quick_result["results"]:
        met = r["targets"]["met"]
        assert "ratio" in met
        assert isinstance(r["targets"]["all_met"], bool)
        if r["size"] == "heavy":
            assert "gemm_share" in met
    assert set(quick_result["targets"]) == {"light", "heavy"}


def test_loader_only_and_profile(quick_result: dict[str, Any]) -> None:
    for size in ("light", "heavy"):
        assert quick_result["rechub_loader_only"][size]["samples_per_s"] > 0
    profiles = quick_result["profile"]
    assert set(profiles) == {"mmoe", "ple"}
    for name, prof in profiles.items():
        assert prof["model"] == name and prof["size"] == "heavy"
        assert prof["step_ms"] > 0
        assert {"experts", "embedding", "gates", "towers", "optimizer"} <= set(
            prof["by_part_share"]
        ), name
        assert sum(prof["by_part_share"].values()) == pytest.approx(1.0, abs=0.01)
        assert sum(prof["phase_share"].values()) == pytest.approx(1.0, abs=0.01)
