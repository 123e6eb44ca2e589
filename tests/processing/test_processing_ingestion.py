"""Ingestion: the ``raw_schema`` record says which file feeds which split."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtl_reco.processing.ingestion import open_source
from mtl_reco.sources.census_income import CensusIncomeOptions
from mtl_reco.sources.registry import options_class, processed_format
from mtl_reco.sources.simulated import SimulatedOptions

ALI_CCP = processed_format("ali_ccp")
AliCcpOptions = options_class("ali_ccp")
HEADER = ",".join(("click", "purchase", *ALI_CCP.sparse, *ALI_CCP.dense))
ROW = ",".join(["1", "0"] + ["3"] * 23 + ["0.5"] * 8)


@pytest.fixture
def split_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for split, rows in (("train", 0), ("valid", 2), ("test", 1)):
        files[split] = tmp_path / f"{split}.csv"
        files[split].write_text("\n".join([HEADER] + [ROW] * rows) + "\n")
    return files


def test_per_split_files_are_recorded(split_files: dict[str, Path]) -> None:
    options = AliCcpOptions(**{k: str(v) for k, v in split_files.items()})
    schema, table, record = open_source("ali_ccp", options)
    assert table.files == tuple(split_files.items())
    assert record["input_splits"] == {k: str(v) for k, v in split_files.items()}
    assert record["inputs"] == [str(v) for v in split_files.values()]
    assert schema.split_column == "split"


def test_one_file_has_no_input_splits(split_files: dict[str, Path]) -> None:
    _, table, record = open_source(
        "ali_ccp", AliCcpOptions(path=str(split_files["valid"]))
    )
    assert table.files == ((None, split_files["valid"]),)
    assert record["input_splits"] == {}
    assert record["inputs"] == [str(split_files["valid"])]


def test_census_paths_are_recorded(tmp_path: Path) -> None:
    train, test = tmp_path / "a.data", tmp_path / "b.data"
    for path in (train, test):
        path.write_text("x\n")  # read lazily: only existence is checked here
    options = CensusIncomeOptions(paths={"test": str(test), "train": str(train)})
    _, table, record = open_source("census_income", options)
    assert table.files == (("train", train), ("test", test))
    assert record["input_splits"] == {"train": str(train), "test": str(test)}


def test_generated_source_has_no_input_splits() -> None:
    _, _, record = open_source("simulated", SimulatedOptions(n_rows=10))
    assert record["input_splits"] == {} and record["inputs"] == []


def test_the_record_names_every_option_the_source_ran_with() -> None:
    _, _, record = open_source("simulated", {"n_rows": 100, "seed": 3})
    defaults = SimulatedOptions().to_dict()
    assert record["options"] == {**defaults, "n_rows": 100, "seed": 3}
    assert len(record["options"]) > 2  # the defaults too, not only what was set
