"""Custom Kedro datasets (this package and ``pipelines`` are the only Kedro users)."""

from mtl_reco.datasets.parquet_table import ParquetTableDataset

__all__ = ["ParquetTableDataset"]
