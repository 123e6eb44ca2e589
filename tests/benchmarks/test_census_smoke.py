"""Smoke tests of ``census_quality.py --quick`` and ``loss_weighting.py --quick``.

Each script runs once (subprocess, one torch thread) on the first 4,000 rows
of the real Census-Income file, one epoch, one seed, both libraries, and
writes ``<name>_quick.json`` into a temporary folder. The tests check the
layout and that the figures are in range; quality is not asserted (one
epoch on 3 k rows), nor are timings (DESIGN §6). The data comes from the
``shared_data`` fixture (skipped where the data folder is absent, a failure
in CI). Needs Torch-RecHub (the ``bench`` extra).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from _smoke import BENCH, RECHUB_HINT, run_script

CENSUS_FILE = "census-income-kdd/uci-raw/census_income_1994_1995_train.csv.gz"
TASKS = {"income", "marital"}
MODELS = {"shared_bottom", "mmoe", "ple", "aitm"}
LIBRARIES = {"mtl_reco", "torch_rechub"}
STRATEGIES = {"fixed", "uwl", "gradnorm", "metabalance", "dwa", "pcgrad"}
RECHUB_STRATEGIES = {"uwl", "gradnorm", "metabalance"}


def _run_quick(script: str, data: Path, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH / script), "--quick", "--threads", "1"]
    run_script([*cmd, "--data", str(data), "--results-dir", str(out)], hint=RECHUB_HINT)
    name = Path(script).stem
    written = sorted(p.name for p in out.glob("*.json"))
    assert written == [f"{name}_quick.json"], written  # never the full results
    doc: dict[str, Any] = json.loads((out / written[0]).read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def census(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("census_quality")
    return _run_quick("census_quality.py", shared_data / CENSUS_FILE, out)


@pytest.fixture(scope="module")
def weighting(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("loss_weighting")
    return _run_quick("loss_weighting.py", shared_data / CENSUS_FILE, out)


def _is_auc(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0


def _table(doc: dict[str, Any], start: str) -> list[dict[str, Any]]:
    table = next(t for t in doc["tables"] if t["title"].startswith(start))
    return [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]


def _check_header(doc: dict[str, Any], name: str) -> None:
    assert doc["benchmark"] == f"{name}_quick" and doc["timestamp"]
    assert "--quick" in doc["command"]
    cfg = doc["config"]
    assert cfg["quick"] is True and cfg["seed_list"] == [1] and cfg["threads"] == 1
    assert cfg["epochs"] == 1 and cfg["rows"] == 4000
    assert cfg["budget"]["batch_size"] == 1024 and cfg["budget"]["embedding_dim"] == 4
    results = doc["results"]
    assert results["rechub_version"] == "0.9.0"
    split = results["data"]["split"]
    assert split["method"] == "random" and split["seed"] == 17
    assert sum(split["rows"].values()) == results["data"]["rows_read"] == 4000
    assert all(n > 0 for n in split["rows"].values())
    assert set(results["data"]["positive_rate"]) == TASKS
    assert results["data"]["features"] == {"sparse": 32, "dense": 7}
    assert any("official UCI test file" in n for n in doc["notes"]) == (
        name == "census_quality"
    )


def _check_summary(summary: list[dict[str, Any]]) -> None:
    for s in summary:
        auc = s["test_auc"]
        assert auc["n"] == 1 and auc["std"] is None and _is_auc(auc["mean"])
        assert s["test_auc_min"] == s["test_auc_max"] == auc["mean"]
        assert s["test_logloss_mean"] > 0 and s["epochs_run_mean"] == 1
        assert s["seconds_per_epoch_mean"] > 0


def test_census_quality(census: dict[str, Any]) -> None:
    _check_header(census, "census_quality")
    summary = census["results"]["summary"]
    assert census["results"]["errors"] == []
    assert {(s["model"], s["library"], s["task"]) for s in summary} == {
        (m, lib, t) for m in MODELS for lib in LIBRARIES for t in TASKS
    }
    _check_summary(summary)
    assert {"diff_min", "diff_max", "paper_gap_min", "paper_gap_max"} <= set(
        census["figures"]
    )


def test_census_quality_tables(census: dict[str, Any]) -> None:
    side = _table(census, "Test AUC")
    assert {(r["model"], r["task"]) for r in side} == {
        (m, t) for m in MODELS for t in TASKS
    }
    paper = {
        (r["model"], r["task"]): r["paper (best / mean, or reported)"] for r in side
    }
    assert paper[("mmoe", "income")] == "0.9410 / 0.9359"
    assert paper[("mmoe", "marital")] == "0.9926 / 0.9927"
    assert paper[("shared_bottom", "income")] == "0.9361 / 0.9295"
    assert paper[("shared_bottom", "marital")] == "0.9915 / 0.9921"
    assert paper[("ple", "income")] == "0.9522"
    assert paper[("ple", "marital")] == "0.9945"
    assert paper[("aitm", "income")] is None
    for r in side:
        ours, theirs = r["mtl_reco"], r["Torch-RecHub 0.9.0"]
        assert r["mtl_reco - Torch-RecHub"] == pytest.approx(
            ours["mean"] - theirs["mean"]
        )
    cost = _table(census, "Training cost")
    assert {r["model"] for r in cost} == MODELS
    assert all(r["mtl_reco epochs"] == 1.0 for r in cost)


def test_loss_weighting(weighting: dict[str, Any]) -> None:
    _check_header(weighting, "loss_weighting")
    results = weighting["results"]
    summary = results["summary"]
    ours = {(s["strategy"], s["task"]) for s in summary if s["library"] == "mtl_reco"}
    assert ours == {(s, t) for s in STRATEGIES for t in TASKS}
    _check_summary(summary)
    assert not [e for e in results["errors"] if e["library"] == "mtl_reco"]
    for s in summary:
        weight = s["weight_final"]["mean"]
        if s["library"] == "mtl_reco":
            assert isinstance(weight, float) and math.isfinite(weight) and weight > 0
        if s["strategy"] == "fixed":
            assert weight == 1.0
    rows = _table(weighting, "mtl_reco")
    assert {r["strategy"] for r in rows} == STRATEGIES
    fixed = next(r for r in rows if r["strategy"] == "fixed")
    assert fixed["time vs fixed"] == pytest.approx(1.0)
    assert all(r["time vs fixed"] > 0 for r in rows)


def test_loss_weighting_rechub_outcomes(weighting: dict[str, Any]) -> None:
    outcomes = {r["strategy"]: r for r in _table(weighting, "Torch-RecHub's own")}
    assert set(outcomes) == RECHUB_STRATEGIES
    summary = weighting["results"]["summary"]
    ran = {s["strategy"] for s in summary if s["library"] == "torch_rechub"}
    for name, o in outcomes.items():
        assert o["status"] in {"ok", "error"} and o["note"], name
        assert (o["status"] == "ok") == (name in ran) == (o["errors"] is None), name
