"""Custom Kedro datasets (this package and ``pipelines`` are the only Kedro users).

Only what kedro-datasets has no dataset for: JSON and text artefacts use
``json.JSONDataset`` and ``text.TextDataset`` directly.

* :class:`ParquetTableDataset`: a parquet file loaded lazily, saved by streaming.
* :class:`TorchStateDictDataset`: a ``state_dict``, loaded tensors-only.
* :class:`OnnxModelDataset`: ONNX model bytes.
* :class:`OptionalJSONDataset`: ``json.JSONDataset`` that loads ``None`` while
  never written (``{experiment}.test_metrics`` for ``compare``).
* :class:`SourceFilesDataset`: where a source's raw input files are.
* :class:`ScoringModelDataset`: the scoring model, local or from the MLflow
  Model Registry (``score.model_uri``).

All take fsspec paths/URLs. :class:`~mtl_reco.datasets.staged.StagedDataset`
is the run guard's view of an entry through the run's staging folder.

Imports are lazy so that a data-only run never loads PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "OnnxModelDataset": "mtl_reco.datasets.onnx_model",
    "OptionalJSONDataset": "mtl_reco.datasets.optional_json",
    "ParquetTableDataset": "mtl_reco.datasets.parquet_table",
    "ScoringModelDataset": "mtl_reco.datasets.registry_model",
    "SourceFilesDataset": "mtl_reco.datasets.source_files",
    "TorchStateDictDataset": "mtl_reco.datasets.state_dict",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'mtl_reco.datasets' has no attribute {name!r}")
