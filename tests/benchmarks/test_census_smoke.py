"""Smoke tests of ``census_quality.py --quick`` and ``loss_weighting.py --quick``.

Each script runs once (subprocess, one torch thread) on the first few
thousand rows of the real Census-Income file, one epoch, one seed, both
libraries, and writes ``<name>_quick.json`` into a temporary folder. The tests
check the JSON layout that ``benchmarks/make_report.py`` renders and that the
figures are in range; quality is not asserted (one epoch on 3 k rows), nor are
timings (DESIGN §6). The data comes from the ``shared_data`` fixture (skipped
where the data folder is absent, a failure in CI). Needs Torch-RecHub (the
``bench`` extra).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from _smoke import RECHUB_HINT, ROOT, run_script

BENCH = ROOT / "benchmarks"
CENSUS_FILE = "census-income-kdd/uci-raw/census_income_1994_1995_train.csv.gz"
TASKS = {"income", "marital"}
MODELS = {"shared_bottom", "mmoe", "ple", "aitm"}
LIBRARIES = {"mtl_reco", "torch_rechub"}
STRATEGIES = {"fixed", "uwl", "gradnorm", "metabalance", "dwa", "pcgrad"}
RECHUB_STRATEGIES = {"uwl", "gradnorm", "metabalance"}


def _run_quick(script: str, data: Path, out: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(BENCH / script),
        "--quick",
        "--threads",
        "1",
        "--data",
        str(data),
        "--results-dir",
        str(out),
    ]
    run_script(cmd, hint=RECHUB_HINT)
    name = Path(script).stem
    written = sorted(p.name for p in out.glob("*.json"))
    assert written == [f"{name}_quick.json"], written  # never the full results
    payload: dict[str, Any] = json.loads(
        (out / f"{name}_quick.json").read_text(encoding="utf-8")
    )
    return payload


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


def _check_header(payload: dict[str, Any], name: str) -> None:
    assert payload["benchmark"] == f"{name}_quick"
    assert payload["timestamp"]
    assert "--quick" in payload["command"]
    assert payload["layout_version"] == 1
    assert set(payload["layout"]) >= {"rows", "runs", "summary", "errors"}
    assert payload["config"]["quick"] is True
    assert payload["config"]["seeds"] == [1]
    budget = payload["config"]["budget"]
    assert budget["max_epochs"] == 1
    assert budget["batch_size"] == 1024 and budget["embedding_dim"] == 4
    assert budget["threads"] == 1
    assert "official" in payload["note"]
    assert payload["rechub_version"] == "0.9.0"
    split = payload["data"]["split"]
    assert split["method"] == "random" and split["seed"] == 17
    assert sum(split["rows"].values()) == payload["data"]["rows_read"] == 4000
    assert all(n > 0 for n in split["rows"].values())
    assert {t["name"] for t in payload["data"]["tasks"]} == TASKS
    assert payload["data"]["features"]["sparse"] == 32
    assert payload["data"]["features"]["dense"] == 7


def test_census_quality_layout(census: dict[str, Any]) -> None:
    _check_header(census, "census_quality")
    assert census["errors"] == []
    assert set(census["config"]["model_params"]) == MODELS
    assert census["config"]["differences"]
    keys = {(r["model"], r["library"], r["seed"], r["task"]) for r in census["rows"]}
    assert keys == {(m, lib, 1, t) for m in MODELS for lib in LIBRARIES for t in TASKS}
    assert len(census["runs"]) == len(MODELS) * len(LIBRARIES)
    assert all(run["status"] == "ok" for run in census["runs"])


def test_census_quality_ranges(census: dict[str, Any]) -> None:
    for r in census["rows"]:
        label = (r["model"], r["library"], r["task"])
        assert _is_auc(r["test_auc"]), label
        assert _is_auc(r["valid_auc"]), label
        assert r["test_logloss"] > 0, label
        assert r["epochs_run"] == 1 and r["scored_epoch"] == 1, label
        assert r["seconds_per_epoch"] > 0 and r["fit_seconds"] > 0, label
        assert r["n_parameters"] > 0, label
    for s in census["summary"]:
        assert s["n_seeds"] == 1 and s["test_auc_std"] is None
        assert _is_auc(s["test_auc_mean"])
        assert s["test_auc_min"] == s["test_auc_max"] == s["test_auc_mean"]


def test_census_quality_paper_figures(census: dict[str, Any]) -> None:
    figures = {(p["model"], p["task"], p["figure"]): p["auc"] for p in census["paper"]}
    assert figures[("mmoe", "income", "best")] == 0.9410
    assert figures[("mmoe", "income", "mean")] == 0.9359
    assert figures[("mmoe", "marital", "best")] == 0.9926
    assert figures[("mmoe", "marital", "mean")] == 0.9927
    assert figures[("shared_bottom", "income", "best")] == 0.9361
    assert figures[("shared_bottom", "income", "mean")] == 0.9295
    assert figures[("shared_bottom", "marital", "best")] == 0.9915
    assert figures[("shared_bottom", "marital", "mean")] == 0.9921
    assert figures[("ple", "income", "reported")] == 0.9522
    assert figures[("ple", "marital", "reported")] == 0.9945
    side = {(r["model"], r["task"]): r for r in census["side_by_side"]}
    assert set(side) == {(m, t) for m in MODELS for t in TASKS}
    for (model, _task), row in side.items():
        for lib in LIBRARIES:
            assert row[lib]["n"] == 1 and _is_auc(row[lib]["mean"])
        assert (row["paper"] is None) == (model == "aitm")


def test_loss_weighting_layout(weighting: dict[str, Any]) -> None:
    _check_header(weighting, "loss_weighting")
    assert weighting["errors"] == []
    assert weighting["config"]["model"] == "mmoe"
    assert set(weighting["config"]["strategy_params"]) == STRATEGIES
    ours = {
        (r["strategy"], r["task"])
        for r in weighting["rows"]
        if r["library"] == "mtl_reco"
    }
    assert ours == {(s, t) for s in STRATEGIES for t in TASKS}
    summary = {(s["strategy"], s["library"], s["task"]) for s in weighting["summary"]}
    assert {(s, "mtl_reco", t) for s in STRATEGIES for t in TASKS} <= summary


def test_loss_weighting_ranges_and_weights(weighting: dict[str, Any]) -> None:
    for r in weighting["rows"]:
        label = (r["strategy"], r["library"], r["task"])
        assert _is_auc(r["test_auc"]), label
        for key in ("weight_final", "weight_last_epoch", "weight_scored_epoch"):
            if r["library"] == "mtl_reco" or r[key] is not None:
                w = r[key]
                assert isinstance(w, float) and math.isfinite(w) and w > 0, (label, key)
        assert r["seconds_per_epoch"] > 0, label
    for s in weighting["summary"]:
        if s["library"] == "mtl_reco":
            assert s["time_vs_fixed"] > 0
    fixed = [r for r in weighting["rows"] if r["strategy"] == "fixed"]
    assert all(r["weight_final"] == 1.0 for r in fixed)


def test_loss_weighting_rechub_outcomes(weighting: dict[str, Any]) -> None:
    outcomes = {o["strategy"]: o for o in weighting["rechub_outcomes"]}
    assert set(outcomes) == RECHUB_STRATEGIES
    for name, o in outcomes.items():
        assert o["status"] in {"ok", "error"}, name
        assert o["note"], name
        if o["status"] == "error":
            assert o["errors"] and all(o["errors"]), name
            assert o["n_failed"] == len(o["seeds"]), name
        else:
            rows = [
                r
                for r in weighting["rows"]
                if (r["library"], r["strategy"]) == ("torch_rechub", name)
            ]
            assert {r["task"] for r in rows} == TASKS, name
