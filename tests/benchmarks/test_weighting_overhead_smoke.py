"""Smoke test of ``benchmarks/weighting_overhead.py --quick`` (subprocess).

The script times one training epoch per loss-weighting strategy and a bare
loop; the test checks every registered strategy and the bare loop are timed
and the table's ratios are the timings' ratios. Timings are not compared.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from _smoke import quick_json_once

from mtl_reco.modeling.weighting.registry import available_strategies

SCRIPT = "benchmarks/weighting_overhead.py"


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return quick_json_once(tmp_path_factory, SCRIPT, ("--threads", "1"))


def test_every_strategy_is_timed(quick: tuple[Path, dict[str, Any]]) -> None:
    _, doc = quick
    ms = doc["results"]["ms_per_step"]
    assert set(ms) == {"bare loop", *available_strategies()}
    assert all(math.isfinite(v) and v > 0 for v in ms.values())
    rows = {r[0]: r for r in doc["tables"][0]["rows"]}
    for name, value in ms.items():
        assert rows[name][1] == value
        assert rows[name][2] == pytest.approx(value / ms["fixed"])
    ratio = doc["figures"]["trainer_fixed_vs_bare_loop"]
    assert ratio == pytest.approx(ms["fixed"] / ms["bare loop"])
    for name, value in ms.items():
        assert doc["figures"][f"{name}_vs_fixed"] == pytest.approx(value / ms["fixed"])
