"""Smoke test of ``benchmarks/selection_bias.py --quick`` (subprocess).

The quick run simulates a few thousand impressions, trains the naive CVR
model and the five architectures for one epoch with one thread, and scores
every pCVR against the simulator's true pCVR. On so little data the AUCs
are close to chance and may fall on either side of each other: the test
checks the structure and the ranges (AUCs in [0, 1], calibration figures
consistent with their definitions), never which model wins.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from _smoke import load_make_report, quick_json_once

SCRIPT = "benchmarks/selection_bias.py"  # relative: the JSON records this command
ARCHS = {"shared_bottom", "esmm", "mmoe", "ple", "aitm"}
SUBSETS = ("all", "clicked", "unclicked")


def _auc(value: Any) -> bool:
    return isinstance(value, float) and 0.0 <= value <= 1.0


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return quick_json_once(tmp_path_factory, SCRIPT, ["--threads", "1"])


def test_header_and_data(quick: tuple[Path, dict[str, Any]]) -> None:
    _, doc = quick
    assert doc["benchmark"] == "selection_bias_quick"
    assert "--quick" in doc["command"]
    cfg = doc["config"]
    assert cfg["quick"] is True and cfg["seeds"] == 1 and cfg["threads"] == 1
    assert set(cfg["models"]) == ARCHS
    (run,) = doc["runs"]
    splits = run["splits"]
    assert sum(s["rows"] for s in splits.values()) == cfg["rows"]
    for name, s in splits.items():
        assert 0 < s["purchases"] <= s["clicks"] < s["rows"], name
    naive = run["naive_cvr"]
    assert 0 < naive["train_rows"] == splits["train"]["clicks"]
    assert 1 <= naive["epochs_run"] <= cfg["naive_max_epochs"]


def test_every_architecture_against_the_oracle(
    quick: tuple[Path, dict[str, Any]],
) -> None:
    _, doc = quick
    models = doc["runs"][0]["models"]
    assert set(models) == ARCHS
    for name, m in models.items():
        for task in ("ctr", "ctcvr"):
            assert _auc(m[f"{task}_auc"]), (name, task)
            assert _auc(m[f"{task}_oracle_auc"]), (name, task)
            assert m[f"{task}_oracle_gap"] == pytest.approx(
                m[f"{task}_oracle_auc"] - m[f"{task}_auc"], abs=1e-12
            )
        assert m["cvr_score"] == ("latent" if name == "esmm" else "ratio")
        assert m["epochs_run"] == 1 and m["train_s"] > 0 and m["samples_per_s"] > 0


def test_pcvr_against_the_truth(quick: tuple[Path, dict[str, Any]]) -> None:
    _, doc = quick
    run = doc["runs"][0]
    truth = run["pcvr_vs_truth"]
    assert set(truth) == ARCHS | {"naive_cvr"}
    test_rows = run["splits"]["test"]["rows"]
    for name, t in truth.items():
        assert t["all"]["rows"] == test_rows
        assert t["clicked"]["rows"] + t["unclicked"]["rows"] == test_rows
        for subset in SUBSETS:
            s = t[subset]
            assert _auc(s["auc_counterfactual"]), (name, subset)
            assert -1.0 <= s["spearman"] <= 1.0, (name, subset)
            assert 0.0 < s["mean_pred"] < 1.0 and 0.0 < s["mean_true"] < 1.0
            assert s["mean_ratio"] == pytest.approx(
                s["mean_pred"] / s["mean_true"], rel=1e-9
            )
            # ECE is bounded by the mean absolute error, hence by 1.
            assert 0.0 <= s["ece"] <= 1.0, (name, subset)
        clicked_auc = t["auc_clicked_observed"]
        assert clicked_auc is None or _auc(clicked_auc), name
    for subset in SUBSETS:
        assert _auc(run["oracle_pcvr"][subset]["auc_counterfactual"])


def test_summary_over_seeds(quick: tuple[Path, dict[str, Any]]) -> None:
    _, doc = quick
    run, summary = doc["runs"][0], doc["summary"]
    one = summary["pcvr_vs_truth"]["esmm"]["all"]["auc_counterfactual"]
    assert one["n"] == 1 and one["std"] is None
    assert one["mean"] == pytest.approx(
        run["pcvr_vs_truth"]["esmm"]["all"]["auc_counterfactual"]
    )
    head = summary["headline"]["esmm_minus_naive_auc_counterfactual_all"]
    expected = (
        run["pcvr_vs_truth"]["esmm"]["all"]["auc_counterfactual"]
        - run["pcvr_vs_truth"]["naive_cvr"]["all"]["auc_counterfactual"]
    )
    assert head["mean"] == pytest.approx(expected)
    assert math.isfinite(summary["models"]["mmoe"]["ctr_auc"]["mean"])


def test_report_renders_it(quick: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, _ = quick
    (tmp_path / "selection_bias.json").write_bytes(path.read_bytes())
    report = load_make_report("make_report_for_selection_bias").build_report(tmp_path)
    section = report.split("## 6. Sample selection bias")[1].split("\n## ")[0]
    assert "is not the one this report knows" not in section
    assert "| naive CVR (clicked rows only) |" in section
    assert "| esmm (latent pCVR) |" in section
    assert "| oracle (true pCVR) |" in section
    for arch in ARCHS:
        assert f"| {arch} |" in section, arch
    assert "python benchmarks/selection_bias.py --quick" in section
    assert "**What this shows.**" in section
