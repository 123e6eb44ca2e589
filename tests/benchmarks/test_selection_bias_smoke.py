"""Smoke test of ``benchmarks/selection_bias.py --quick`` (subprocess).

The quick run simulates a few thousand impressions, trains the naive CVR
model and the five architectures for one epoch with one thread, and scores
every pCVR against the simulator's true pCVR. On so little data the AUCs
are close to chance and may fall on either side of each other: the test
checks the structure and the ranges (AUCs in [0, 1], calibration figures
consistent with their definitions), never which model wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _smoke import load_make_report, quick_json_once

SCRIPT = "benchmarks/selection_bias.py"  # relative: the JSON records this command
ARCHS = {"shared_bottom", "esmm", "mmoe", "ple", "aitm"}
SUBSETS = ("all", "clicked", "unclicked")
Quick = tuple[Path, dict[str, Any]]


def _auc(stats: Any) -> bool:
    value = stats["mean"] if isinstance(stats, dict) else stats
    return isinstance(value, float) and 0.0 <= value <= 1.0


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Quick:
    return quick_json_once(tmp_path_factory, SCRIPT, ["--threads", "1"])


def test_header_and_data(quick: Quick) -> None:
    _, doc = quick
    assert doc["benchmark"] == "selection_bias_quick" and "--quick" in doc["command"]
    cfg, results = doc["config"], doc["results"]
    assert cfg["quick"] is True and cfg["seeds"] == 1 and cfg["threads"] == 1
    assert set(cfg["models"]) == ARCHS
    splits = results["splits_first_seed"]
    assert sum(s["rows"] for s in splits.values()) == cfg["rows"]
    for name, s in splits.items():
        assert 0 < s["purchases"] <= s["clicks"] < s["rows"], name
    naive = results["summary"]["naive_cvr"]
    assert naive["train_rows"]["mean"] == splits["train"]["clicks"]
    assert 1 <= naive["epochs_run"]["mean"] <= cfg["naive_epochs"]


def test_every_architecture_against_the_oracle(quick: Quick) -> None:
    _, doc = quick
    models = doc["results"]["summary"]["models"]
    assert set(models) == ARCHS
    for name, m in models.items():
        for task in ("ctr", "ctcvr"):
            auc, oracle = m[f"{task}_auc"], m[f"{task}_oracle_auc"]
            assert _auc(auc) and _auc(oracle) and auc["n"] == 1, (name, task)
            gap = m[f"{task}_oracle_gap"]["mean"]
            assert gap == pytest.approx(oracle["mean"] - auc["mean"], abs=1e-12)
        assert m["epochs_run"]["mean"] == 1


def test_pcvr_against_the_truth(quick: Quick) -> None:
    _, doc = quick
    summary = doc["results"]["summary"]
    truth = summary["pcvr_vs_truth"]
    assert set(truth) == ARCHS | {"naive_cvr"}
    test_rows = doc["results"]["splits_first_seed"]["test"]["rows"]
    for name, t in truth.items():
        m = {s: {k: v["mean"] for k, v in t[s].items()} for s in SUBSETS}
        assert m["all"]["rows"] == test_rows
        assert m["clicked"]["rows"] + m["unclicked"]["rows"] == test_rows
        for subset in SUBSETS:
            s = m[subset]
            assert _auc(s["auc_counterfactual"]), (name, subset)
            assert -1.0 <= s["spearman"] <= 1.0, (name, subset)
            assert 0.0 < s["mean_pred"] < 1.0 and 0.0 < s["mean_true"] < 1.0
            assert s["mean_ratio"] == pytest.approx(s["mean_pred"] / s["mean_true"])
            assert 0.0 <= s["ece"] <= 1.0, (name, subset)  # at most the mean error
        assert t["auc_clicked_observed"]["n"] <= 1
    for subset in SUBSETS:
        assert _auc(summary["oracle_pcvr"][subset]["auc_counterfactual"])
    head = summary["headline"]["esmm_minus_naive_auc_counterfactual_all"]
    expected = (
        truth["esmm"]["all"]["auc_counterfactual"]["mean"]
        - truth["naive_cvr"]["all"]["auc_counterfactual"]["mean"]
    )
    assert head["n"] == 1 and head["std"] is None
    assert head["mean"] == pytest.approx(expected)


def test_report_renders_it(quick: Quick, tmp_path: Path) -> None:
    path, doc = quick
    assert {"esmm_auc", "naive_auc", "others_auc_min"} <= set(doc["figures"])
    (tmp_path / "selection_bias.json").write_bytes(path.read_bytes())
    report = load_make_report("make_report_for_selection_bias").build_report(tmp_path)
    section = report.split("## 7. Sample selection bias")[1].split("\n## ")[0]
    assert "| naive CVR (clicked rows only) |" in section
    assert "| esmm (latent pCVR) |" in section
    assert "| oracle (true pCVR) |" in section
    for arch in ARCHS:
        assert f"| {arch} |" in section, arch
    assert "python benchmarks/selection_bias.py --quick" in section
    assert "from a `--quick` run" in section
    assert "**What this shows.**" in section and "ESMM's latent pCVR" in section
