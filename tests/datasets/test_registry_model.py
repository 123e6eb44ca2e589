"""The scoring model comes from the local file or from the MLflow registry."""

from __future__ import annotations

import pytest
from kedro.io.core import DatasetError

from mtl_reco.datasets import ScoringModelDataset


def test_without_a_uri_it_is_the_local_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx-bytes")
    dataset = ScoringModelDataset(filepath=str(path))
    assert dataset.exists() and dataset.load() == b"onnx-bytes"


def test_an_unknown_model_uri_fails_in_one_line_naming_it(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    try:
        dataset = ScoringModelDataset(
            filepath=str(tmp_path / "absent.onnx"), model_uri="models:/nope@champion"
        )
        assert dataset.exists()  # the registry decides, not the local file
        with pytest.raises(DatasetError) as err:
            dataset.load()
        with pytest.raises(DatasetError, match="read-only"):
            dataset.save(b"x")
    finally:
        mlflow.set_tracking_uri(previous)
    message = str(err.value)
    assert message.startswith("cannot load model 'models:/nope@champion' from MLflow")
    assert "\n" not in message
