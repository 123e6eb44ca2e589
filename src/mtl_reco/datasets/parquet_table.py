"""Kedro dataset for chunked parquet tables (see :mod:`mtl_reco.tables`).

kedro-datasets' ``pandas.ParquetDataset`` loads and saves one in-memory
DataFrame; this one never holds the table: ``load`` is lazy and ``save``
streams chunk by chunk, which is what lets the data half of the pipeline run
on tables larger than memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from kedro.io.core import Version
from kedro_datasets._typing import TablePreview  # kedro-viz's preview type (a dict)

from mtl_reco.datasets._fs import FsspecFileDataset
from mtl_reco.tables import DEFAULT_CHUNK_ROWS, ParquetTable, Table, write_parquet


class FsspecParquetTable:
    """A parquet file on any fsspec filesystem, read lazily chunk by chunk.

    The same interface as :class:`mtl_reco.tables.ParquetTable` (which the
    dataset uses for local files); ``path`` is the URL.
    """

    def __init__(self, fs: Any, path: str, url: str) -> None:
        self._fs = fs
        self._path = path
        self.path = url

    def _file(self) -> pq.ParquetFile:
        return pq.ParquetFile(self._fs.open(self._path, mode="rb"), pre_buffer=False)

    @property
    def schema(self) -> pa.Schema:
        """Arrow schema of the file."""
        return self._file().schema_arrow

    @property
    def columns(self) -> list[str]:
        """Column names."""
        return list(self.schema.names)

    @property
    def num_rows(self) -> int:
        """Number of rows (from the parquet footer, no data read)."""
        return int(self._file().metadata.num_rows)

    def iter_chunks(
        self, columns: Sequence[str] | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """Yield DataFrames of at most ``chunk_rows`` rows."""
        pf = self._file()
        cols = list(columns) if columns is not None else None
        empty = True
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=cols):
            empty = False
            yield pa.Table.from_batches([batch]).to_pandas(split_blocks=True)
        if empty:
            yield pf.schema_arrow.empty_table().to_pandas()[cols or slice(None)]

    def to_pandas(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Read the whole file (or some columns) into memory."""
        return self._file().read(columns=list(columns) if columns else None).to_pandas()


class ParquetTableDataset(FsspecFileDataset):
    """A parquet file that loads lazily and saves by streaming.

    ``load`` returns a lazy table (:class:`~mtl_reco.tables.ParquetTable` for
    a local file, :class:`FsspecParquetTable` for other filesystems): nothing
    is read until a stage iterates it. ``save`` accepts a DataFrame, any
    :class:`~mtl_reco.tables.Table` (for example a lazy ``StreamTable``) or an
    iterable of DataFrames and writes it chunk by chunk to a temporary file
    that replaces the target only when complete (for another filesystem the
    file is written locally, uploaded beside the target and moved over it),
    so memory stays bounded and a failed save loses nothing already written.

    Args:
        filepath: Path or fsspec URL of the parquet file.
        chunk_rows: Rows per chunk written.
        compression: Parquet codec.
        version, credentials, fs_args, metadata: As for kedro-datasets' file
            datasets (see :class:`~mtl_reco.datasets._fs.FsspecFileDataset`).

    Example catalog entry::

        labelled_events:
          type: mtl_reco.datasets.ParquetTableDataset
          filepath: data/03_primary/labelled_events.parquet
          chunk_rows: 500000
          metadata:
            kedro-viz:
              preview_args: {nrows: 5}
    """

    def __init__(
        self,
        *,
        filepath: str,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        compression: str = "zstd",
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            filepath=filepath,
            version=version,
            credentials=credentials,
            fs_args=fs_args,
            metadata=metadata,
        )
        self._chunk_rows = int(chunk_rows)
        self._compression = compression

    def load(self) -> ParquetTable | FsspecParquetTable:
        """Return a lazy handle on the (latest version of the) file."""
        path = self._load_path_str()
        if self._protocol == "file":
            return ParquetTable(path)
        return FsspecParquetTable(self._fs, path, self._url(path))

    def save(self, data: Table | pd.DataFrame | Any) -> None:
        """Stream ``data`` to the (new version of the) file."""
        target = self._save_path_str()
        rows, codec = self._chunk_rows, self._compression
        if self._protocol == "file":
            # atomic: a temporary file renamed over the target
            write_parquet(data, target, chunk_rows=rows, compression=codec)
            self._invalidate_cache()
            return
        with tempfile.TemporaryDirectory(prefix="mtl_reco_parquet_") as local:
            tmp = Path(local) / "table.parquet"
            write_parquet(data, tmp, chunk_rows=rows, compression=codec)

            def upload(file: Any) -> None:
                with tmp.open("rb") as source:
                    while block := source.read(8 << 20):
                        file.write(block)

            self._write(upload)

    def preview(self, nrows: int = 5) -> TablePreview:
        """The first ``nrows`` rows, as kedro-datasets' ``ParquetDataset.preview``.

        Returns:
            ``DataFrame.to_dict(orient="split")``: ``{"index": [...],
            "columns": [...], "data": [[...], ...]}``. Only the first row
            group(s) needed are read.
        """
        table = self.load()
        head = next(table.iter_chunks(chunk_rows=max(int(nrows), 1)))
        return TablePreview(head.head(nrows).to_dict(orient="split"))

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "chunk_rows": self._chunk_rows}
