import json

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io.core import DatasetError, Version

from mtl_reco.datasets import (
    JSONFileDataset,
    OnnxModelDataset,
    ParquetTableDataset,
    TextFileDataset,
    TorchStateDictDataset,
)
from mtl_reco.datasets.staged import StagedDataset
from mtl_reco.tables import ParquetTable, StreamTable


def test_parquet_table_streams_chunks_and_loads_lazily(tmp_path):
    frames = [
        pd.DataFrame({"a": np.arange(i * 10, i * 10 + 10), "b": 1.5}) for i in range(3)
    ]
    ds = ParquetTableDataset(filepath=str(tmp_path / "t.parquet"), chunk_rows=7)
    ds.save(StreamTable(lambda _rows: iter(frames)))
    table = ds.load()
    assert isinstance(table, ParquetTable)
    assert table.num_rows == 30
    chunks = list(table.iter_chunks(chunk_rows=7))
    assert [len(c) for c in chunks] == [7, 7, 7, 7, 2]
    assert pd.concat(chunks)["a"].tolist() == list(range(30))


def test_failed_parquet_save_keeps_previous_file(tmp_path):
    path = tmp_path / "t.parquet"
    ds = ParquetTableDataset(filepath=str(path))
    ds.save(pd.DataFrame({"a": [1, 2, 3]}))

    def broken(_rows):
        yield pd.DataFrame({"a": [9]})
        raise RuntimeError("stage failed half-way")

    with pytest.raises(DatasetError) as err:  # Kedro wraps the stage's error
        ds.save(StreamTable(broken))
    assert "half-way" in str(err.value.__cause__)
    assert ds.load().to_pandas()["a"].tolist() == [1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]  # no temp left


def test_versioned_json_keeps_every_version_and_loads_latest(tmp_path):
    target = str(tmp_path / "m.json")
    JSONFileDataset(
        filepath=target, version=Version(None, "2026-01-01T00.00.00.000Z")
    ).save({"auc": 0.7})
    JSONFileDataset(
        filepath=target, version=Version(None, "2026-01-02T00.00.00.000Z")
    ).save({"auc": 0.8, "arr": np.array([1, 2])})
    latest = JSONFileDataset(filepath=target, version=Version(None, None)).load()
    assert latest == {"auc": 0.8, "arr": [1, 2]}
    versions = sorted(p.name for p in (tmp_path / "m.json").iterdir())
    assert versions == ["2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"]


def test_json_missing_ok(tmp_path):
    assert (
        JSONFileDataset(filepath=str(tmp_path / "x.json"), missing_ok=True).load()
        is None
    )
    with pytest.raises(DatasetError):
        JSONFileDataset(filepath=str(tmp_path / "x.json")).load()


def test_torch_state_roundtrip_is_tensors_only(tmp_path):
    ds = TorchStateDictDataset(filepath=str(tmp_path / "s.pt"))
    state = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    ds.save(state)
    loaded = ds.load()
    assert torch.equal(loaded["w"], state["w"]) and int(loaded["n"]) == 3
    with pytest.raises(DatasetError, match="state_dict"):
        ds.save(torch.nn.Linear(2, 2))  # modules are never pickled


def test_onnx_bytes_roundtrip(tmp_path):
    ds = OnnxModelDataset(filepath=str(tmp_path / "m.onnx"))
    ds.save(b"\x08\x07onnx")
    assert ds.load() == b"\x08\x07onnx"
    assert json.dumps(ds._describe())


def test_text_roundtrip_and_no_torch_import_for_data_datasets(tmp_path):
    import subprocess
    import sys

    ds = TextFileDataset(filepath=str(tmp_path / "r.md"))
    ds.save("# report\nok\n")
    assert ds.load() == "# report\nok\n"
    code = (
        "import sys, mtl_reco.datasets as d;"
        "d.JSONFileDataset; d.ParquetTableDataset; d.TextFileDataset;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"  # a data-only run never loads PyTorch


def test_staged_dataset_writes_aside_and_reads_its_own_copy_first(tmp_path):
    current = JSONFileDataset(filepath=str(tmp_path / "data" / "report.json"))
    current.save({"run": "last good"})
    staged = JSONFileDataset(filepath=str(tmp_path / "staging" / "report.json"))
    overlay = StagedDataset(staged, current)
    assert overlay.exists() and overlay.load() == {"run": "last good"}
    overlay.save({"run": "this one"})
    assert overlay.load() == {"run": "this one"}
    assert current.load() == {"run": "last good"}  # never written in place
    assert (tmp_path / "staging" / "report.json").is_file()
    empty = StagedDataset(
        JSONFileDataset(filepath=str(tmp_path / "s2.json")),
        JSONFileDataset(filepath=str(tmp_path / "c2.json")),
    )
    assert not empty.exists()
