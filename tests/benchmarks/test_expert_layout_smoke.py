"""Smoke test of ``benchmarks/expert_layout.py --quick`` (subprocess).

The script times MMoE's training step with each expert layout; the test
checks every candidate is timed at every size, the fastest is the smallest
median and the GEMM share follows from the step time. Timings are not compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _smoke import quick_json_once

SCRIPT = "benchmarks/expert_layout.py"


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    args = ("--sizes", "light16", "--reps", "2")
    return quick_json_once(tmp_path_factory, SCRIPT, args)


def test_every_layout_is_timed(quick: tuple[Path, dict[str, Any]]) -> None:
    _, doc = quick
    (run,) = doc["results"]["runs"]
    cands = run["candidates"]
    assert set(cands) == {"linear_list", "per_expert", "fused", "bmm", "manual", "auto"}
    medians = {c: v["ms_median"] for c, v in cands.items()}
    assert all(v > 0 for v in medians.values())
    assert run["fastest"] == min(medians, key=medians.__getitem__)
    assert cands["linear_list"]["ratio_vs_linear_list"] == pytest.approx(1.0)
    shares = {c: v["share_of_gemm"] * v["ms_median"] for c, v in cands.items()}
    assert max(shares.values()) == pytest.approx(min(shares.values()))
    assert [r[0] for r in doc["tables"][0]["rows"]] == ["light16"]
