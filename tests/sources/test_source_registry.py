"""Selecting sources by name; options checked strictly; reading is lazy."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from mtl_reco.sources.base import SourceError
from mtl_reco.sources.formats import builtin_format_files
from mtl_reco.sources.registry import (
    available_sources,
    file_sources,
    options_class,
    processed_format,
    read_source,
)
from mtl_reco.sources.simulated import SimulatedOptions
from mtl_reco.tables import ParquetTable, Table, concat_chunks, write_parquet
from mtl_reco.typed_config import ConfigError, StrictConfig

CODE_SOURCES = ("simulated", "census_income", "ali_ccp_raw")  # modules of code


def test_available_sources() -> None:
    """Sources with a reader module, plus one per format description."""
    described = set(builtin_format_files())
    assert {"ali_ccp", "aliexpress"} <= described
    assert available_sources() == sorted({*CODE_SOURCES, *described})
    assert file_sources() == sorted(set(available_sources()) - {"simulated"})
    for name in available_sources():
        cls = options_class(name)
        assert issubclass(cls, StrictConfig)
        assert isinstance(cls(), cls)  # defaults construct


def test_unknown_source_lists_choices() -> None:
    with pytest.raises(SourceError, match="unknown source 'simulatd'") as info:
        read_source("simulatd")
    assert "simulated" in str(info.value) and "census_income" in str(info.value)
    with pytest.raises(SourceError, match="choose one of"):
        options_class("nope")


def test_misspelt_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="did you mean 'n_rows'"):
        read_source("simulated", {"n_row": 10})
    with pytest.raises(ConfigError, match="expects SimulatedOptions"):
        read_source("simulated", options_class("census_income")())


def test_options_forms() -> None:
    for options in (None, {"n_rows": 10}, SimulatedOptions(n_rows=10)):
        schema, table = read_source("simulated", options)
        assert schema.source == "simulated"
        assert isinstance(table, Table)


def _odd_ali_ccp(tmp_path: Path) -> str:
    ali_ccp = processed_format("ali_ccp")
    header = ",".join(("click", "purchase", *ali_ccp.sparse, *ali_ccp.dense))
    rows = [
        ",".join([c, p] + ["4"] * 23 + ["0.25"] * 8)
        for c, p in [("0", "0"), ("1", "1"), ("0", "1"), ("", "0"), ("2", "0")]
    ]
    path = tmp_path / "odd.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return str(path)


def _cases(root: Path, tmp_path: Path) -> list[tuple[str, dict[str, object]]]:
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "ali_ccp_raw"
    return [
        ("simulated", {"n_rows": 200, "n_users": 500, "n_items": 300}),
        ("ali_ccp_raw", {"directory": str(fixture)}),
        ("ali_ccp", {"path": _odd_ali_ccp(tmp_path)}),
        (
            "ali_ccp",
            {
                "train": str(root / "ali-ccp/torch-rechub/ali_ccp_train_sample.csv"),
                "test": str(root / "ali-ccp/torch-rechub/ali_ccp_test_sample.csv"),
            },
        ),
        (
            "aliexpress",
            {"path": str(root / "aliexpress/torch-rechub/aliexpress_test_sample.csv")},
        ),
    ]


def test_every_source_streams_to_parquet(shared_data: Path, tmp_path: Path) -> None:
    """Chunks of one source share an Arrow schema, so write_parquet accepts them."""
    for i, (name, options) in enumerate(_cases(shared_data, tmp_path)):
        schema, table = read_source(name, options)
        expected = concat_chunks(table.iter_chunks(chunk_rows=2))
        target = tmp_path / f"{i}_{name}.parquet"
        rows = write_parquet(table, target, chunk_rows=2)
        assert rows == len(expected) > 0
        back = ParquetTable(target).to_pandas()
        assert list(back.columns) == schema.columns == list(expected.columns)
        for col in schema.labels:
            pd.testing.assert_series_equal(
                back[col].astype("float64"), expected[col].astype("float64")
            )
        assert back[schema.sparse[0]].tolist() == expected[schema.sparse[0]].tolist()


def test_census_chunks_share_a_schema(shared_data: Path, tmp_path: Path) -> None:
    path = (
        shared_data / "census-income-kdd/uci-raw/census_income_1994_1995_train.csv.gz"
    )
    head = tmp_path / "head.data"
    with gzip.open(path, "rt") as handle:
        head.write_text("".join(next(handle) for _ in range(50)))
    _, table = read_source("census_income", {"path": str(head)})
    rows = write_parquet(table, tmp_path / "census.parquet", chunk_rows=7)
    back = ParquetTable(tmp_path / "census.parquet").to_pandas()
    assert rows == 50 and back["hispanic_origin"].notna().all()
    assert back["migration_code_change_in_msa"].isna().sum() > 0
