"""Train/valid/test split: ratios, determinism, chunk invariance, methods."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from mtl_reco.processing.config import SplitConfig, SplitRatios
from mtl_reco.processing.split import (
    SplitError,
    hash_uniform,
    plan_split,
    split_report,
    split_table,
    time_cutoffs,
)
from mtl_reco.tables import FrameTable, ParquetTable, write_parquet


def events(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "ctr": (rng.random(n) < 0.2).astype(np.float32),
            "f": rng.integers(0, 10, n),
            "row": np.arange(n),
            "t": rng.integers(0, 100, n),
        }
    )


def split_rows(table, config, chunk_rows=1000, **kw):
    plan = plan_split(
        table,
        config,
        split_column=kw.get("split_column"),
        time_column=kw.get("time_column"),
    )
    parts = split_table(table, plan)
    return plan, {
        name: pd.concat(list(t.iter_chunks(chunk_rows=chunk_rows)), ignore_index=True)
        for name, t in parts.items()
    }


def test_hash_uniform_is_uniform_and_seeded():
    idx = np.arange(200_000)
    u = hash_uniform(idx, 5)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005
    np.testing.assert_array_equal(u, hash_uniform(idx, 5))
    assert not np.array_equal(u, hash_uniform(idx, 6))


def test_random_split_honours_ratios_and_covers_every_row():
    table = FrameTable(events(20_000))
    cfg = SplitConfig.from_dict({"ratios": {"train": 0.7, "valid": 0.2, "test": 0.1}})
    plan, parts = split_rows(table, cfg)
    assert plan.method == "random"
    sizes = {k: len(v) / 20_000 for k, v in parts.items()}
    assert sizes["train"] == pytest.approx(0.7, abs=0.015)
    assert sizes["valid"] == pytest.approx(0.2, abs=0.015)
    assert sizes["test"] == pytest.approx(0.1, abs=0.015)
    rows = np.sort(np.concatenate([p["row"].to_numpy() for p in parts.values()]))
    np.testing.assert_array_equal(rows, np.arange(20_000))


def test_random_split_is_deterministic_and_chunk_size_invariant():
    table = FrameTable(events(3000))
    cfg = SplitConfig(seed=11)
    _, a = split_rows(table, cfg, chunk_rows=3000)
    _, b = split_rows(table, cfg, chunk_rows=7)
    _, c = split_rows(table, cfg, chunk_rows=256)
    for name in ("train", "valid", "test"):
        assert (
            a[name]["row"].tolist()
            == b[name]["row"].tolist()
            == c[name]["row"].tolist()
        )
    _, other = split_rows(table, SplitConfig(seed=12))
    assert other["test"]["row"].tolist() != a["test"]["row"].tolist()


def test_invariant_to_reading_back_from_parquet(tmp_path):
    frame = events(2500)
    write_parquet(frame, tmp_path / "e.parquet", chunk_rows=333)
    _, a = split_rows(
        ParquetTable(tmp_path / "e.parquet"), SplitConfig(), chunk_rows=100
    )
    _, b = split_rows(FrameTable(frame), SplitConfig(), chunk_rows=5000)
    assert a["valid"]["row"].tolist() == b["valid"]["row"].tolist()


def test_source_split_is_kept_and_column_dropped():
    frame = events(300)
    frame["split"] = np.array(["train", "valid", "test"])[np.arange(300) % 3]
    plan, parts = split_rows(FrameTable(frame), SplitConfig(), split_column="split")
    assert plan.method == "source" and plan.valid_from_train == 0
    for code, name in enumerate(("train", "valid", "test")):
        assert "split" not in parts[name].columns
        assert parts[name]["row"].tolist() == list(range(code, 300, 3))


def test_source_split_without_valid_carves_valid_from_train():
    frame = events(4000)
    frame["split"] = np.where(np.arange(4000) < 3000, "train", "test")
    plan, parts = split_rows(
        FrameTable(frame), SplitConfig(source_valid_share=0.2), split_column="split"
    )
    assert plan.valid_from_train == 0.2
    assert (parts["test"]["row"] >= 3000).all() and len(parts["test"]) == 1000
    assert (parts["valid"]["row"] < 3000).all()
    assert len(parts["valid"]) / 3000 == pytest.approx(0.2, abs=0.03)


def test_source_split_can_be_ignored_and_bad_values_rejected():
    frame = events(100)
    frame["split"] = "train"
    plan, _ = split_rows(
        FrameTable(frame), SplitConfig(use_source_split=False), split_column="split"
    )
    assert plan.method == "random"
    frame.loc[5, "split"] = "dev"
    with pytest.raises(SplitError, match=r"value\(s\) \['dev'\]"):
        plan_split(
            FrameTable(frame), SplitConfig(), split_column="split", time_column=None
        )


def test_time_split_orders_rows_and_keeps_ties_together():
    table = FrameTable(events(10_000))
    plan, parts = split_rows(table, SplitConfig(time_column="t"), chunk_rows=999)
    assert plan.method == "time"
    train, valid, test = parts["train"], parts["valid"], parts["test"]
    assert train["t"].max() < valid["t"].min() <= valid["t"].max() < test["t"].min()
    assert len(train) / 10_000 == pytest.approx(0.8, abs=0.02)
    assert len(valid) / 10_000 == pytest.approx(0.1, abs=0.02)
    assert plan.cutoffs == (valid["t"].min(), test["t"].min())


def test_time_split_auto_uses_source_time_column():
    plan = plan_split(
        FrameTable(events(500)),
        SplitConfig(time_column="auto"),
        split_column=None,
        time_column="t",
    )
    assert plan.time_column == "t"
    with pytest.raises(SplitError, match="declares no time column"):
        plan_split(
            FrameTable(events(5)),
            SplitConfig(time_column="auto"),
            split_column=None,
            time_column=None,
        )
    with pytest.raises(SplitError, match="'nope' is not in"):
        plan_split(
            FrameTable(events(5)),
            SplitConfig(time_column="nope"),
            split_column=None,
            time_column=None,
        )


def test_time_cutoffs_with_few_days_keep_every_split_non_empty(caplog):
    counts = pd.Series([100] * 7, index=np.arange(7))
    with caplog.at_level(logging.WARNING):
        (valid_start, test_start), shares = time_cutoffs(counts, SplitRatios())
    assert (valid_start, test_start) == (5, 6)
    assert shares == pytest.approx([5 / 7, 1 / 7, 1 / 7])
    assert "realised shares" in caplog.text


def test_split_report_counts_and_rates():
    frame = events(1000)
    _, parts = split_rows(FrameTable(frame), SplitConfig())
    report = split_report(
        {k: FrameTable(v) for k, v in parts.items()},
        [{"name": "ctr", "type": "classification"}],
        {"method": "random", "time_column": None},
    )
    assert report["rows"] == 1000
    for name, part in parts.items():
        entry = report["splits"][name]
        assert entry["rows"] == len(part)
        assert entry["ctr_positive_rate"] == pytest.approx(part["ctr"].mean())
        assert entry["share"] == pytest.approx(len(part) / 1000)
