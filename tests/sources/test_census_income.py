"""Census-Income (KDD) on the real UCI training file, plus error cases."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl_reco.sources.base import SourceError
from mtl_reco.sources.census_income import COLUMNS, DENSE
from mtl_reco.sources.registry import read_source
from mtl_reco.tables import concat_chunks
from mtl_reco.typed_config import ConfigError

RAW = "census-income-kdd/uci-raw/census_income_1994_1995_train.csv.gz"


@pytest.fixture(scope="module")
def census_path(shared_data: Path) -> Path:
    return shared_data / RAW


@pytest.fixture(scope="module")
def census(census_path: Path) -> pd.DataFrame:
    _, table = read_source("census_income", {"path": str(census_path)})
    return concat_chunks(table.iter_chunks())


@pytest.fixture(scope="module")
def raw_lines(census_path: Path) -> list[str]:
    with gzip.open(census_path, "rt") as handle:
        return [next(handle) for _ in range(30)]


def test_counts_and_label_rates(census: pd.DataFrame) -> None:
    assert len(census) == 199_523
    assert round(100 * census["income_50k"].mean(), 2) == 6.21
    assert round(100 * census["never_married"].mean(), 2) == 43.35
    assert int(census["income_50k"].sum()) == 12_382
    assert int(census["never_married"].sum()) == 86_485
    assert census["income_50k"].dtype == np.int8
    assert census["never_married"].dtype == np.int8


def test_schema_and_columns(census: pd.DataFrame, census_path: Path) -> None:
    schema, _ = read_source("census_income", {"path": str(census_path)})
    assert list(census.columns) == schema.columns
    assert schema.labels == ("income_50k", "never_married")
    assert [(t.name, t.source) for t in schema.default_tasks] == [
        ("income", "income_50k"),
        ("marital", "never_married"),
    ]
    assert schema.funnel is None and schema.split_column is None
    features = set(schema.sparse) | set(schema.dense)
    assert "instance_weight" not in features
    assert schema.extras == ("instance_weight",)
    assert not {"income", "marital_stat"} & set(census.columns)
    assert "education" in schema.sparse
    assert schema.dense == DENSE and len(DENSE) == 7
    assert len(schema.sparse) == 42 - 7 - 3  # minus dense, weight, 2 label sources
    for coded in (
        "detailed_industry_recode",
        "detailed_occupation_recode",
        "own_business_or_self_employed",
        "veterans_benefits",
        "year",
    ):
        assert coded in schema.sparse
        assert census[coded].dtype == "str"
    assert set(census["year"].unique()) == {"94", "95"}
    for col in DENSE:
        assert census[col].dtype == np.float64
    assert census["age"].max() == 90.0


def test_na_category_kept_and_question_mark_missing(census: pd.DataFrame) -> None:
    assert int((census["hispanic_origin"] == "NA").sum()) == 874
    assert census["hispanic_origin"].isna().sum() == 0
    assert census["migration_code_change_in_msa"].isna().sum() == 99_696
    assert census["state_of_previous_residence"].isna().sum() == 708
    text = census.select_dtypes("str")
    assert not (text == "?").any().any()
    assert census["instance_weight"].iloc[:2].tolist() == [1700.09, 1053.55]


def test_chunked_reading_matches_one_chunk(
    census: pd.DataFrame, census_path: Path
) -> None:
    _, table = read_source("census_income", {"path": str(census_path)})
    chunks = list(table.iter_chunks(chunk_rows=70_000))
    assert [len(c) for c in chunks] == [70_000, 70_000, 59_523]
    pd.testing.assert_frame_equal(concat_chunks(chunks), census)


def test_education_group(census_path: Path, raw_lines: list[str]) -> None:
    schema, table = read_source(
        "census_income",
        {"path": str(census_path), "task_group": "education_marital"},
    )
    assert "education" not in schema.sparse
    assert schema.labels == ("income_50k", "never_married", "education_college")
    assert [t.source for t in schema.default_tasks] == [
        "education_college",
        "never_married",
    ]
    first = next(iter(table.iter_chunks(chunk_rows=30)))
    educations = [line.split(", ")[4] for line in raw_lines]
    college = ("Some college", "Associates", "Bachelors", "Masters", "Prof", "Doct")
    expected = [int(e.startswith(college)) for e in educations]
    assert first["education_college"].tolist() == expected
    assert "Some college but no degree" in educations


def test_paths_combine_files_with_split(tmp_path: Path, raw_lines: list[str]) -> None:
    train, test = tmp_path / "train.data", tmp_path / "test.data"
    train.write_text("".join(raw_lines[:20]))
    test.write_text("".join(raw_lines[20:]))
    schema, table = read_source(
        "census_income", {"paths": {"train": str(train), "test": str(test)}}
    )
    assert schema.split_column == "split"
    frame = concat_chunks(table.iter_chunks(chunk_rows=7))
    assert frame["split"].value_counts().to_dict() == {"train": 20, "test": 10}
    assert frame["split"].iloc[0] == "train" and frame["split"].iloc[-1] == "test"


def test_wrong_field_count_names_file_and_line(
    tmp_path: Path, raw_lines: list[str]
) -> None:
    longer = tmp_path / "longer.data"
    lines = list(raw_lines[:10])
    lines[6] = lines[6].rstrip("\n") + ", extra\n"
    longer.write_text("".join(lines))
    _, table = read_source("census_income", {"path": str(longer)})
    with pytest.raises(SourceError, match=r"longer\.data.*line 7"):
        list(table.iter_chunks(chunk_rows=4))

    shorter = tmp_path / "shorter.data"
    lines = list(raw_lines[:10])
    lines[8] = lines[8].rsplit(", ", 1)[0] + "\n"
    shorter.write_text("".join(lines))
    _, table = read_source("census_income", {"path": str(shorter)})
    with pytest.raises(SourceError, match=r"shorter\.data line 9: expected 42"):
        list(table.iter_chunks(chunk_rows=4))


def test_missing_and_empty_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.data.gz"
    with pytest.raises(SourceError, match=r"not found: .*nope\.data\.gz"):
        read_source("census_income", {"path": str(missing)})
    empty = tmp_path / "empty.data"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty \(0 bytes\): .*empty\.data"):
        read_source("census_income", {"path": str(empty)})
    with pytest.raises(SourceError, match="no input file"):
        read_source("census_income", {})
    with pytest.raises(ConfigError, match="not both"):
        read_source("census_income", {"path": "a", "paths": {"train": "b"}})
    with pytest.raises(ConfigError, match="did you mean 'task_group'"):
        read_source("census_income", {"path": "a", "taskgroup": "x"})


def test_unknown_label_value_is_missing_not_guessed(
    tmp_path: Path, raw_lines: list[str]
) -> None:
    odd = tmp_path / "odd.data"
    lines = list(raw_lines[:3])
    lines[1] = lines[1].replace("- 50000.", "?")
    odd.write_text("".join(lines))
    _, table = read_source("census_income", {"path": str(odd)})
    frame = concat_chunks(table.iter_chunks())
    assert frame["income_50k"].isna().tolist() == [False, True, False]
    assert len(COLUMNS) == 42


@pytest.mark.parametrize("chunk_rows", [4, 100])
def test_unknown_income_value_names_file_line_and_value(
    tmp_path: Path, raw_lines: list[str], chunk_rows: int
) -> None:
    odd = tmp_path / "census.data"
    lines = list(raw_lines[:10])
    assert lines[6].rstrip("\n").endswith(", - 50000.")
    lines[6] = lines[6].rstrip("\n")[: -len("- 50000.")] + "50000+\n"
    lines[8] = lines[8].replace("- 50000.", "?")  # still a missing value, later
    odd.write_text("".join(lines))
    _, table = read_source("census_income", {"path": str(odd)})
    expected = (
        f"census_income: {odd} line 7: unknown income value '50000+' "
        "(expected '- 50000.' or '50000+.')"
    )
    with pytest.raises(SourceError) as err:
        list(table.iter_chunks(chunk_rows=chunk_rows))
    assert str(err.value) == expected
