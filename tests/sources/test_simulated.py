"""The simulated funnel: schema, determinism, chunking, calibration, signal."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mtl_reco.sources import simulated
from mtl_reco.sources.registry import read_source
from mtl_reco.sources.simulated import (
    BLOCK_ROWS,
    DENSE,
    SPARSE,
    SimulatedOptions,
    simulated_schema,
)
from mtl_reco.tables import concat_chunks
from mtl_reco.typed_config import ConfigError

SMALL_WORLD = {"n_users": 3_000, "n_items": 1_500, "n_categories": 50}


def _frame(chunk_rows: int = 100_000, **options: object) -> pd.DataFrame:
    _, table = read_source("simulated", options)
    return concat_chunks(table.iter_chunks(chunk_rows=chunk_rows))


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    """300 k rows with the default world: enough for stable rates and AUCs."""
    return _frame(n_rows=300_000, seed=11)


def _logit(p: pd.Series) -> np.ndarray:
    return np.log(p / (1 - p)).to_numpy()


def test_schema_columns_and_dtypes() -> None:
    schema, table = read_source("simulated", {"n_rows": 1_000, **SMALL_WORLD})
    frame = concat_chunks(table.iter_chunks())
    assert list(frame.columns) == schema.columns
    sparse = "101 121 122 124 125 126 127 128 129 205 206 207 210 216 508 509 702 853"
    sparse += " 301 109_14 110_14 127_14 150_14"
    assert list(schema.sparse) == sparse.split(" ")
    dense = "D109_14 D110_14 D127_14 D150_14 D508 D509 D702 D853"
    assert list(schema.dense) == dense.split(" ")
    assert schema.labels == ("click", "purchase")
    assert schema.funnel == ("click", "purchase")
    assert schema.split_column is None and "split" not in frame.columns
    assert schema.time_column == "day"
    assert [(t.name, t.source) for t in schema.default_tasks] == [
        ("ctr", "click"),
        ("ctcvr", "click * purchase"),
    ]
    assert set(schema.extras) == {"true_pctr", "true_pcvr", "true_pctcvr", "day"}
    assert len(frame) == 1_000
    assert frame["click"].dtype == np.int8 and frame["purchase"].dtype == np.int8
    for col in SPARSE:
        assert frame[col].dtype == np.int64, col
        assert frame[col].min() >= 1, col
    for col in DENSE:
        assert frame[col].dtype == np.float64, col
        assert np.isfinite(frame[col]).all() and frame[col].min() >= 0.0, col
    assert getattr(table, "num_rows", None) == 1_000


def test_deterministic_per_seed_and_seed_matters() -> None:
    a = _frame(n_rows=5_000, seed=3, **SMALL_WORLD)
    b = _frame(n_rows=5_000, seed=3, **SMALL_WORLD)
    c = _frame(n_rows=5_000, seed=4, **SMALL_WORLD)
    pd.testing.assert_frame_equal(a, b)
    assert not a["101"].equals(c["101"])


def test_chunk_size_invariance_and_reiteration() -> None:
    n = 2 * BLOCK_ROWS + 1_234
    _, table = read_source("simulated", {"n_rows": n, "seed": 5, **SMALL_WORLD})
    reference = concat_chunks(table.iter_chunks(chunk_rows=10**7))
    assert len(reference) == n
    for chunk_rows in (997, BLOCK_ROWS, 100_003):
        chunks = list(table.iter_chunks(chunk_rows=chunk_rows))
        assert all(len(c) <= chunk_rows for c in chunks)
        assert all(len(c) == chunk_rows for c in chunks[:-1])
        pd.testing.assert_frame_equal(concat_chunks(chunks), reference)
    subset = concat_chunks(table.iter_chunks(columns=["click", "day"]))
    pd.testing.assert_frame_equal(subset, reference[["click", "day"]])


def test_generation_is_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks are generated one at a time, only when the consumer asks."""
    calls: list[int] = []
    original = simulated.generate_block

    def counting(world, options, k):  # type: ignore[no-untyped-def]
        calls.append(k)
        return original(world, options, k)

    monkeypatch.setattr(simulated, "generate_block", counting)
    _, table = read_source("simulated", {"n_rows": 5 * BLOCK_ROWS, **SMALL_WORLD})
    assert calls == []  # read_source is lazy
    chunks = table.iter_chunks(chunk_rows=1_000)
    first = next(chunks)
    assert len(first) == 1_000 and calls == [0]
    rest = sum(len(c) for c in chunks)
    assert rest + 1_000 == 5 * BLOCK_ROWS and calls == [0, 1, 2, 3, 4]


def _peak_bytes(n_rows: int) -> tuple[int, int]:
    """Peak traced memory while streaming ``n_rows`` rows, and the rows' size."""
    _, table = read_source("simulated", {"n_rows": n_rows, "seed": 2, **SMALL_WORLD})
    next(iter(table.iter_chunks(chunk_rows=1_000)))  # build and cache the world
    total = 0
    tracemalloc.start()
    try:
        for chunk in table.iter_chunks(chunk_rows=20_000):
            total += int(chunk.memory_usage(index=False).sum())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, total


def test_memory_does_not_grow_with_rows() -> None:
    # the peak (about two blocks in flight) is reached by 3 blocks, then flat
    small_peak, _ = _peak_bytes(3 * BLOCK_ROWS)
    large_peak, large_total = _peak_bytes(8 * BLOCK_ROWS)
    assert large_total > 140e6
    assert large_peak < 1.1 * small_peak, (small_peak, large_peak)
    assert large_peak < 0.7 * large_total, (large_peak, large_total)


def test_purchase_implies_click_and_true_ctcvr_exact(big: pd.DataFrame) -> None:
    assert int(((big["purchase"] == 1) & (big["click"] == 0)).sum()) == 0
    assert (big["true_pctcvr"] == big["true_pctr"] * big["true_pcvr"]).all()
    for col in ("true_pctr", "true_pcvr"):
        assert big[col].between(0, 1, inclusive="neither").all()


def test_realised_rates_near_targets(big: pd.DataFrame) -> None:
    assert abs(big["click"].mean() - 0.04) < 0.005
    clicked = big[big["click"] == 1]
    assert abs(clicked["purchase"].mean() - 0.10) < 0.02
    other = _frame(n_rows=150_000, seed=1, ctr=0.10, cvr=0.25, **SMALL_WORLD)
    assert abs(other["click"].mean() - 0.10) < 0.005
    assert abs(other.loc[other["click"] == 1, "purchase"].mean() - 0.25) < 0.02


def test_profiles_are_consistent(big: pd.DataFrame) -> None:
    user_fields = [
        "121",
        "122",
        "124",
        "125",
        "126",
        "127",
        "128",
        "129",
        "109_14",
        "110_14",
        "127_14",
        "150_14",
        "D109_14",
        "D110_14",
        "D127_14",
        "D150_14",
    ]
    per_user = big.groupby("101")[user_fields].nunique()
    assert (per_user == 1).all().all()
    per_item = big.groupby("205")[["206", "207", "210", "216"]].nunique()
    assert (per_item == 1).all().all()
    assert sorted(big["301"].unique()) == [1, 2, 3]
    assert big["124"].nunique() == 2 and big["125"].nunique() == 7


def test_zipf_like_popularity(big: pd.DataFrame) -> None:
    for col in ("101", "205"):
        counts = big[col].value_counts()
        top = counts.iloc[: max(1, len(counts) // 100)].sum() / len(big)
        assert top > 0.15, (col, top)  # top 1 % of ids: far more than 1 %


def test_cross_fields_match_behaviour(big: pd.DataFrame) -> None:
    matched = big["508"] > 1
    assert 0.1 < matched.mean() < 0.9
    # a matched category cross carries the item category and a positive count
    assert (big.loc[matched, "508"] == big.loc[matched, "206"] + 1).all()
    assert (big.loc[matched, "D508"] > 0).all()
    assert (big.loc[~matched, "D508"] == 0).all()


def test_oracle_signal_and_dense_signal(big: pd.DataFrame) -> None:
    assert roc_auc_score(big["click"], big["true_pctr"]) > 0.7
    clicked = big[big["click"] == 1]
    assert roc_auc_score(clicked["purchase"], clicked["true_pcvr"]) > 0.6
    assert roc_auc_score(big["click"], big["D508"]) > 0.6
    assert roc_auc_score(big["click"], big["D109_14"]) > 0.55


def test_selection_bias_and_correlation_option(big: pd.DataFrame) -> None:
    clicked = big["click"] == 1
    gap = big.loc[clicked, "true_pcvr"].mean() - big.loc[~clicked, "true_pcvr"].mean()
    assert gap > 0.03  # default correlation 0.5: clicked rows convert more
    corr = np.corrcoef(_logit(big["true_pctr"]), _logit(big["true_pcvr"]))[0, 1]
    assert abs(corr - 0.5) < 0.05
    flat = _frame(n_rows=100_000, seed=11, correlation=0.0)
    corr0 = np.corrcoef(_logit(flat["true_pctr"]), _logit(flat["true_pcvr"]))[0, 1]
    assert abs(corr0) < 0.05


def test_day_column_is_ordered() -> None:
    frame = _frame(n_rows=7_000, n_days=7, **SMALL_WORLD)
    assert frame["day"].is_monotonic_increasing
    assert frame["day"].value_counts().sort_index().tolist() == [1_000] * 7


def test_zero_rows_yields_one_empty_chunk() -> None:
    schema, table = read_source("simulated", {"n_rows": 0})
    chunks = list(table.iter_chunks())
    assert len(chunks) == 1 and len(chunks[0]) == 0
    assert list(chunks[0].columns) == schema.columns


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ctr": 1.5}, "SimulatedOptions.ctr must be < 1.0, got 1.5"),
        ({"ctr": 0}, "SimulatedOptions.ctr must be > 0.0, got 0"),
        (
            {"correlation": -2.0},
            "SimulatedOptions.correlation must be >= -1.0, got -2.0",
        ),
        (
            {"n_items": 10, "n_categories": 20},
            "SimulatedOptions: n_items must be >= n_categories, got 10 < 20",
        ),
        ({"n_rows": 2.5}, "SimulatedOptions.n_rows: expected an integer, got 2.5"),
    ],
)
def test_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        SimulatedOptions.from_dict(options)


def test_schema_round_trips() -> None:
    schema = simulated_schema()
    assert type(schema).from_dict(schema.to_dict()) == schema
