"""Custom Kedro datasets (this package and ``pipelines`` are the only Kedro users)."""

from mtl_reco.datasets.json_file import JSONFileDataset
from mtl_reco.datasets.model_files import OnnxModelDataset, TorchStateDictDataset
from mtl_reco.datasets.parquet_table import ParquetTableDataset

__all__ = [
    "JSONFileDataset",
    "OnnxModelDataset",
    "ParquetTableDataset",
    "TorchStateDictDataset",
]
