"""A source's files are catalog entries: the ingest node reads them through URLs."""

from __future__ import annotations

import uuid

import fsspec
import pandas as pd
import pytest

from mtl_reco.datasets import SourceFilesDataset
from mtl_reco.pipelines.data_processing.ingestion.nodes import ingest_source
from mtl_reco.pipelines.data_processing.ingestion.pipeline import create_pipeline
from mtl_reco.sources.base import SourceError

from .conftest import ali_ccp_frame


def _put(url: str, frame: pd.DataFrame) -> None:
    with fsspec.open(url, "wt", compression="infer") as file:
        frame.to_csv(file, index=False)


@pytest.fixture(params=["memory", "file"])
def folder(request, tmp_path) -> str:
    if request.param == "memory":
        return f"memory://{uuid.uuid4().hex}"
    return tmp_path.as_uri()


def test_ingest_reads_the_selected_source_through_urls(folder):
    frame = ali_ccp_frame(90)
    files = {
        "train": f"{folder}/train.csv",
        "valid": f"{folder}/valid.csv.gz",  # decompressed by its extension
        "test": f"{folder}/test.csv",
    }
    _put(files["train"], frame.iloc[:50])
    _put(files["valid"], frame.iloc[50:70])
    _put(files["test"], frame.iloc[70:])
    entry = SourceFilesDataset(files=files)
    assert entry.exists()

    table, record = ingest_source(
        "ali_ccp",
        {"ali_ccp": {}, "census_income": {"task_group": "income_marital"}},
        ali_ccp_files=entry.load(),
        census_income_files={"path": f"{folder}/not_read.csv"},  # not selected
        aliexpress_files={},
        ali_ccp_raw_files={"directory": None},
    )
    chunks = list(table.iter_chunks(chunk_rows=32))
    rows = pd.concat(chunks, ignore_index=True)
    assert len(rows) == 90 and max(len(c) for c in chunks) <= 32
    assert rows["split"].value_counts().to_dict() == {
        "train": 50,
        "valid": 20,
        "test": 20,
    }
    assert rows["click"].tolist() == frame["click"].tolist()
    assert record["dataset"] == "ali_ccp"
    assert set(record["input_splits"]) == {"train", "valid", "test"}
    local = folder.startswith("file://")
    for split, url in files.items():
        expected = url.removeprefix("file://") if local else url
        assert record["input_splits"][split] == expected
    assert len(record["inputs"]) == 3


def test_a_missing_url_is_a_source_error_naming_it(folder):
    with pytest.raises(SourceError, match=r"file not found: .*nope\.csv"):
        ingest_source("ali_ccp", {}, ali_ccp_files={"path": f"{folder}/nope.csv"})


def test_a_file_named_in_the_parameters_too_is_an_error(folder):
    with pytest.raises(
        SourceError, match=r"sources\.ali_ccp\.train: .*'ali_ccp_files'"
    ):
        ingest_source(
            "ali_ccp",
            {"ali_ccp": {"train": "elsewhere.csv"}},
            ali_ccp_files={"train": f"{folder}/train.csv"},
        )


def test_the_node_takes_every_source_files_entry():
    (node,) = create_pipeline().nodes
    assert set(node.inputs) == {
        "params:dataset",
        "params:sources",
        "census_income_files",
        "ali_ccp_files",
        "ali_ccp_raw_files",
        "aliexpress_files",
    }


def test_the_checks_before_a_run_see_the_catalog_files():
    """The guard hands preflight the parameters with each source's files merged."""
    from types import SimpleNamespace

    from mtl_reco.guard import _with_source_files

    source_files = "mtl_reco.datasets.SourceFilesDataset"
    catalog = {
        "census_income_files": {"type": source_files, "files": "memory://c.csv"},
        "ali_ccp_files": {"type": source_files, "files": {"train": "t.csv"}},
        "raw_events": {"type": "mtl_reco.datasets.ParquetTableDataset"},
    }
    context = SimpleNamespace(config_loader={"catalog": catalog})
    params = {"dataset": "census_income", "sources": {"census_income": {}}}
    merged, problem = _with_source_files(params, context)
    assert problem is None
    assert merged["sources"]["census_income"] == {"path": "memory://c.csv"}
    assert merged["sources"]["ali_ccp"] == {"train": "t.csv"}
    assert params["sources"] == {"census_income": {}}  # the run's own are untouched
    twice = {"sources": {"ali_ccp": {"train": "x.csv"}}}
    _, problem = _with_source_files(twice, context)
    assert problem and "sources.ali_ccp.train" in problem
