"""Kedro dataset for chunked parquet tables (see :mod:`mtl_reco.tables`)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version

from mtl_reco.tables import DEFAULT_CHUNK_ROWS, ParquetTable, Table, write_parquet


class ParquetTableDataset(AbstractVersionedDataset[Any, ParquetTable]):
    """A local parquet file that loads lazily and saves by streaming.

    ``load`` returns a :class:`~mtl_reco.tables.ParquetTable` (nothing is read
    until a stage iterates it). ``save`` accepts a DataFrame, any
    :class:`~mtl_reco.tables.Table` (for example a lazy ``StreamTable``) or an
    iterable of DataFrames, and writes it chunk by chunk to a temporary file
    that replaces the target only when complete, so memory stays bounded and a
    failed save loses nothing already written.

    Example catalog entry::

        labelled_events:
          type: mtl_reco.datasets.ParquetTableDataset
          filepath: data/03_primary/labelled_events.parquet
          chunk_rows: 500000
    """

    def __init__(
        self,
        *,
        filepath: str,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        compression: str = "zstd",
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self._chunk_rows = int(chunk_rows)
        self._compression = compression
        self.metadata = metadata

    def load(self) -> ParquetTable:
        """Return a lazy handle on the (latest version of the) file."""
        path = Path(self._get_load_path().as_posix())
        if not path.exists():
            raise DatasetError(
                f"parquet table {path} does not exist; run the stage that writes it"
            )
        return ParquetTable(path)

    def save(self, data: Table | pd.DataFrame | Any) -> None:
        """Stream ``data`` to the (new version of the) file."""
        path = Path(self._get_save_path().as_posix())
        write_parquet(
            data, path, chunk_rows=self._chunk_rows, compression=self._compression
        )

    def _exists(self) -> bool:
        try:
            path = self._get_load_path()
        except DatasetError:
            return False
        return Path(path.as_posix()).exists()

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "version": self._version,
            "chunk_rows": self._chunk_rows,
        }
