"""The project's Kedro datasets: fsspec URLs, versions, previews, errors."""

import json
import subprocess
import sys
import uuid

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io.core import DatasetError, Version
from kedro_datasets.json import JSONDataset

from mtl_reco.datasets import (
    OnnxModelDataset,
    OptionalJSONDataset,
    ParquetTableDataset,
    SourceFilesDataset,
    TorchStateDictDataset,
)
from mtl_reco.datasets.parquet_table import FsspecParquetTable
from mtl_reco.datasets.staged import StagedDataset
from mtl_reco.tables import ParquetTable, StreamTable

V1 = "2026-01-01T00.00.00.000Z"
V2 = "2026-01-02T00.00.00.000Z"


@pytest.fixture(params=["memory", "file"])
def url(request, tmp_path):
    """A fresh folder URL: ``memory:///<unique>`` or ``file://<tmp_path>``."""
    if request.param == "memory":
        return f"memory:///{uuid.uuid4().hex}"
    return tmp_path.as_uri()


def _onnx_bytes(name: str = "tiny") -> bytes:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(graph)
    helper.set_model_props(model, {"experiment": name})
    return bytes(model.SerializeToString()) if onnx else b""


def _state(scale: float = 1.0) -> dict[str, torch.Tensor]:
    return {"w": torch.arange(6.0).reshape(2, 3) * scale, "n": torch.tensor(3)}


def _frame(n: int = 30) -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(n), "b": np.arange(n) * 0.5})


# (factory, data of version 1, data of version 2, equality)
CASES = {
    "parquet": (
        lambda fp, **kw: ParquetTableDataset(filepath=fp, chunk_rows=7, **kw),
        _frame(30),
        _frame(12),
        lambda loaded, data: loaded.to_pandas().equals(data),
    ),
    "torch": (
        lambda fp, **kw: TorchStateDictDataset(filepath=fp, **kw),
        _state(1.0),
        _state(2.0),
        lambda loaded, data: all(torch.equal(loaded[k], data[k]) for k in data),
    ),
    "onnx": (
        lambda fp, **kw: OnnxModelDataset(filepath=fp, **kw),
        _onnx_bytes("one"),
        _onnx_bytes("two"),
        lambda loaded, data: loaded == data,
    ),
    "optional_json": (
        lambda fp, **kw: OptionalJSONDataset(filepath=fp, **kw),
        {"auc": 0.7},
        {"auc": 0.8, "nan": float("nan")},
        lambda loaded, data: json.dumps(loaded) == json.dumps(data),
    ),
}
SUFFIX = {"parquet": "t.parquet", "torch": "s.pt", "onnx": "m.onnx"}


@pytest.mark.parametrize("kind", list(CASES))
def test_round_trip_through_a_url(url, kind):
    make, data, _, same = CASES[kind]
    ds = make(f"{url}/{SUFFIX.get(kind, 'x.json')}")
    assert not ds.exists()
    ds.save(data)
    assert ds.exists()
    assert same(ds.load(), data)
    assert json.dumps(ds._describe(), default=str)


@pytest.mark.parametrize("kind", list(CASES))
def test_versioned_save_keeps_every_version_and_loads_the_latest(url, kind):
    make, first, second, same = CASES[kind]
    target = f"{url}/{SUFFIX.get(kind, 'x.json')}"
    make(target, version=Version(None, V1)).save(first)
    make(target, version=Version(None, V2)).save(second)
    assert same(make(target, version=Version(None, None)).load(), second)
    assert same(make(target, version=Version(V1, None)).load(), first)
    listed = make(target, version=Version(None, None))._fs.ls(
        make(target)._get_load_path().as_posix(), detail=False
    )
    assert sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in listed) == [V1, V2]


@pytest.mark.parametrize("kind", ["parquet", "torch", "onnx"])
def test_a_missing_file_is_a_dataset_error_naming_it(url, kind):
    make, *_ = CASES[kind]
    target = f"{url}/missing/{SUFFIX[kind]}"
    with pytest.raises(DatasetError, match=f"missing/{SUFFIX[kind]}"):
        make(target).load()
    with pytest.raises(DatasetError, match="versions"):
        make(target, version=Version(None, None)).load()


def test_optional_json_is_none_until_written_unless_required(url):
    assert OptionalJSONDataset(filepath=f"{url}/x.json").load() is None
    assert OptionalJSONDataset(filepath=f"{url}/x.json").missing_ok
    with pytest.raises(DatasetError, match=r"x\.json"):
        OptionalJSONDataset(filepath=f"{url}/x.json", missing_ok=False).load()
    versioned = OptionalJSONDataset(
        filepath=f"{url}/v.json", version=Version(None, None)
    )
    assert versioned.load() is None


def test_parquet_loads_lazily_and_streams_chunks(url):
    frames = [
        pd.DataFrame({"a": np.arange(i * 10, i * 10 + 10), "b": 1.5}) for i in range(3)
    ]
    ds = ParquetTableDataset(filepath=f"{url}/t.parquet", chunk_rows=7)
    ds.save(StreamTable(lambda _rows: iter(frames)))
    table = ds.load()
    local = url.startswith("file://")
    assert isinstance(table, ParquetTable if local else FsspecParquetTable)
    assert table.num_rows == 30 and table.columns == ["a", "b"]
    chunks = list(table.iter_chunks(chunk_rows=7))
    assert [len(c) for c in chunks] == [7, 7, 7, 7, 2]
    assert pd.concat(chunks)["a"].tolist() == list(range(30))
    assert table.to_pandas(["a"])["a"].tolist() == list(range(30))


def test_failed_parquet_save_keeps_previous_file(url):
    ds = ParquetTableDataset(filepath=f"{url}/t.parquet")
    ds.save(pd.DataFrame({"a": [1, 2, 3]}))

    def broken(_rows):
        yield pd.DataFrame({"a": [9]})
        raise RuntimeError("stage failed half-way")

    with pytest.raises(DatasetError) as err:  # Kedro wraps the stage's error
        ds.save(StreamTable(broken))
    assert "half-way" in str(err.value.__cause__)
    assert ds.load().to_pandas()["a"].tolist() == [1, 2, 3]
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in ds._fs.ls(url, detail=False)]
    assert names == ["t.parquet"]  # no temporary file left


def test_parquet_preview_is_a_kedro_viz_table(url):
    ds = ParquetTableDataset(filepath=f"{url}/t.parquet", chunk_rows=4)
    ds.save(_frame(30))
    preview = ds.preview(nrows=5)
    assert set(preview) == {"index", "columns", "data"}
    assert preview["columns"] == ["a", "b"] and preview["index"] == [0, 1, 2, 3, 4]
    assert preview["data"][4] == [4, 2.0]
    assert len(ds.preview()["data"]) == 5  # the default, as kedro-datasets'


def test_model_previews_are_json(url):
    state = TorchStateDictDataset(filepath=f"{url}/s.pt")
    state.save(_state())
    assert json.loads(state.preview()) == {"w": "float32[2, 3]", "n": "int64[]"}
    onnx_ds = OnnxModelDataset(filepath=f"{url}/m.onnx")
    onnx_ds.save(_onnx_bytes("tiny"))
    shown = json.loads(onnx_ds.preview())
    assert shown["inputs"] == ["x"] and shown["outputs"] == ["y"]
    assert shown["metadata"] == {"experiment": "tiny"} and shown["bytes"] > 0


def test_torch_state_is_tensors_only(tmp_path):
    ds = TorchStateDictDataset(filepath=str(tmp_path / "s.pt"))
    ds.save(_state())
    with pytest.raises(DatasetError, match="state_dict"):
        ds.save(torch.nn.Linear(2, 2))  # modules are never pickled
    with pytest.raises(DatasetError, match="ONNX model bytes"):
        OnnxModelDataset(filepath=str(tmp_path / "m.onnx")).save("not bytes")


def test_kedro_datasets_json_loads_a_dict_the_nodes_can_use(tmp_path):
    ds = JSONDataset(filepath=str(tmp_path / "r.json"))
    ds.save({"tasks": [{"name": "ctr"}], "rate": float("nan")})
    loaded = ds.load()
    assert isinstance(loaded, dict) and loaded["tasks"][0]["name"] == "ctr"
    assert np.isnan(loaded["rate"])


# -- source files ---------------------------------------------------------------------
def _write(fs_url: str, text: str) -> None:
    import fsspec

    with fsspec.open(fs_url, "wt", compression="infer") as file:
        file.write(text)


def test_source_files_load_opens_nothing_and_returns_the_locations(url):
    files = {"train": f"{url}/train.csv", "valid": None, "test": f"{url}/test.csv.gz"}
    ds = SourceFilesDataset(files=files)
    loaded = ds.load()  # nothing exists yet: loading does not open anything
    if url.startswith("file://"):
        assert loaded["train"] == url.removeprefix("file://") + "/train.csv"
    else:
        assert loaded == files
    assert loaded["valid"] is None
    assert not ds.exists() and ds.missing_ok
    _write(f"{url}/train.csv", "a,b\n1,2\n3,4\n")
    assert not ds.exists()  # test.csv.gz still missing
    _write(f"{url}/test.csv.gz", "a,b\n5,6\n")
    assert ds.exists()
    assert ds._describe() == {"files": {k: v for k, v in loaded.items() if v}}
    assert SourceFilesDataset(files=f"{url}/train.csv").load() == {
        "path": loaded["train"]
    }
    with pytest.raises(DatasetError, match="read-only"):
        ds.save({"path": "x.csv"})


def test_source_files_preview_shows_the_first_lines(url):
    _write(f"{url}/train.csv", "".join(f"{i},{i * 2}\n" for i in range(20)))
    _write(f"{url}/test.csv.gz", "a,b\n5,6\n")
    ds = SourceFilesDataset(
        files={"train": f"{url}/train.csv", "test": f"{url}/test.csv.gz"}
    )
    shown = json.loads(ds.preview(nrows=3))
    assert shown["train"]["lines"] == ["0,0", "1,2", "2,4"]
    assert shown["test"]["lines"] == ["a,b", "5,6"]  # decompressed
    missing = json.loads(SourceFilesDataset(files=f"{url}/nope.csv").preview())
    assert "nope.csv" in missing["path"]["location"] and "error" in missing["path"]


def test_source_files_reject_what_is_not_a_location():
    with pytest.raises(DatasetError, match=r"files\.train must be a string"):
        SourceFilesDataset(files={"train": 3})


# -- staging and imports -------------------------------------------------------
def test_staged_dataset_writes_aside_and_reads_its_own_copy_first(tmp_path):
    current = JSONDataset(filepath=str(tmp_path / "data" / "report.json"))
    current.save({"run": "last good"})
    staged = JSONDataset(filepath=str(tmp_path / "staging" / "report.json"))
    overlay = StagedDataset(staged, current)
    assert overlay.exists() and overlay.load() == {"run": "last good"}
    overlay.save({"run": "this one"})
    assert overlay.load() == {"run": "this one"}
    assert current.load() == {"run": "last good"}  # never written in place
    assert (tmp_path / "staging" / "report.json").is_file()
    empty = StagedDataset(
        JSONDataset(filepath=str(tmp_path / "s2.json")),
        JSONDataset(filepath=str(tmp_path / "c2.json")),
    )
    assert not empty.exists()


def test_data_datasets_do_not_import_torch():
    code = (
        "import sys, mtl_reco.datasets as d;"
        "d.ParquetTableDataset; d.OptionalJSONDataset; d.SourceFilesDataset;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr  # a data-only run never loads it
