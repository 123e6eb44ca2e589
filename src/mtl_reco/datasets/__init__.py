"""Custom Kedro datasets (this package and ``pipelines`` are the only Kedro users).

Imports are lazy so that a data-only run never loads PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "JSONFileDataset": "mtl_reco.datasets.json_file",
    "OnnxModelDataset": "mtl_reco.datasets.model_files",
    "ParquetTableDataset": "mtl_reco.datasets.parquet_table",
    "TextFileDataset": "mtl_reco.datasets.json_file",
    "TorchStateDictDataset": "mtl_reco.datasets.model_files",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'mtl_reco.datasets' has no attribute {name!r}")
