"""Smoke test of ``benchmarks/metrics_speed.py --quick`` (subprocess).

The script times the project's AUC/LogLoss against scikit-learn's; the test
checks the JSON is written, every pair agrees to the tolerance and the
timings are positive. Timings are not compared (DESIGN section 6).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from _smoke import quick_json_once

SCRIPT = "benchmarks/metrics_speed.py"


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return quick_json_once(tmp_path_factory, SCRIPT, ())


def test_every_pair_agrees_and_is_timed(quick: tuple[Path, dict[str, Any]]) -> None:
    _, doc = quick
    results = doc["results"]
    assert doc["config"]["quick"] is True and "--quick" in doc["command"]
    assert results["all_agree"] is True and results["cases"]
    for case in results["cases"]:
        for metric in ("auc", "logloss"):
            entry = case[metric]
            assert entry["agree"] and entry["max_abs_diff"] <= results["tolerance"]
            assert set(entry["values"]) == {"numpy", "sklearn", "mtl_reco"}
            assert all(math.isfinite(v) for v in entry["values"].values())
            assert all(t > 0 for t in entry["best_s"].values())
    assert results["decision"]["auc"] in ("numpy", "sklearn")
    assert len(doc["tables"][0]["rows"]) == len(results["cases"])
