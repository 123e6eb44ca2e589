"""Toy raw events for the data-processing library tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_reco.sources.base import RawSchema, TaskDefinition

TOY_SCHEMA = RawSchema(
    source="toy",
    labels=("click", "purchase"),
    sparse=("user", "item"),
    dense=("d1", "d2"),
    extras=("t",),
    funnel=("click", "purchase"),
    default_tasks=(
        TaskDefinition("ctr", "click"),
        TaskDefinition("ctcvr", "click * purchase"),
    ),
    time_column="t",
)


def toy_frame(n: int = 100, seed: int = 0) -> pd.DataFrame:
    """Clean raw events of TOY_SCHEMA: purchase only after click."""
    rng = np.random.default_rng(seed)
    click = (rng.random(n) < 0.3).astype(np.int8)
    purchase = (click * (rng.random(n) < 0.4)).astype(np.int8)
    return pd.DataFrame(
        {
            "click": click,
            "purchase": purchase,
            "user": rng.integers(1, 20, n).astype(np.int64),
            "item": rng.integers(1, 50, n).astype(np.int64),
            "d1": rng.normal(3.0, 2.0, n),
            "d2": rng.exponential(10.0, n),
            "t": np.arange(n, dtype=np.int64) // 10,
        }
    )


@pytest.fixture
def schema() -> RawSchema:
    return TOY_SCHEMA


@pytest.fixture
def frame() -> pd.DataFrame:
    return toy_frame()
