"""Helpers shared by the file readers: file checks, re-chunking, column coercion.

Input files are paths or fsspec URLs (``s3://``, ``gcs://``, ``memory://``,
``file://``...): :func:`require_file` checks them through fsspec and returns
a local file as a :class:`~pathlib.Path` (readers that hand a path to
pyarrow keep its native, memory-mapped reader) and any other file as its URL
(:data:`InputPath`); :func:`open_input` opens either, decompressing by the
file extension (``compression="infer"``), and the CSV helpers read through it
with pandas, chunk by chunk.

The coercion helpers implement the house rule that sources never *clean*
data. They only give columns a stable dtype so that every chunk of one source
has the same schema:

* a label or integer-id column is ``int8``/``int64`` when every value of the
  chunk is a whole number, and the nullable ``Int8``/``Int64`` otherwise
  (a missing or unparseable value becomes ``<NA>`` and is counted in a
  warning). Both are stored as the same Arrow integer type, so chunks of
  either kind can be written to one parquet file, and a label of ``2`` stays
  ``2`` for the validation stage to judge;
* a dense column is ``float64`` (unparseable text becomes NaN, with a warning).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import fsspec
import numpy as np
import pandas as pd

from mtl_reco.sources.base import SPLIT_COLUMN, SPLITS, SourceError
from mtl_reco.tables import StreamTable

logger = logging.getLogger(__name__)

InputPath = Path | str
"""A checked input file: a local :class:`Path`, or the fsspec URL of another file."""


class SourceTable(StreamTable):
    """A :class:`~mtl_reco.tables.StreamTable` that may know its row count.

    Args:
        produce: Called with ``chunk_rows`` on every iteration.
        columns: Column names of the produced chunks (``None``: from the
            first chunk, when a file decides them).
        num_rows: Number of rows when known without reading (the simulator).
        files: The input files in reading order, each as ``(split, path)``:
            ``split`` is the value of the ``split`` column its rows get, or
            ``None`` when the file's rows carry no split (a single file);
            ``path`` is an :data:`InputPath`. Empty when the reader does not
            say (the simulator, ``ali_ccp_raw``).
    """

    def __init__(
        self,
        produce: Callable[[int], Iterable[pd.DataFrame]],
        columns: Sequence[str] | None,
        num_rows: int | None = None,
        files: Sequence[tuple[str | None, InputPath]] = (),
    ) -> None:
        super().__init__(produce, columns)
        self._num_rows = num_rows
        self.files: tuple[tuple[str | None, InputPath], ...] = tuple(files)

    @property
    def num_rows(self) -> int | None:
        """Row count if known up front, else ``None`` (count by iterating)."""
        return self._num_rows


def is_url(location: str | Path) -> bool:
    """Whether ``location`` names a protocol (``s3://...``, ``file://...``)."""
    return isinstance(location, str) and "://" in location


def require_file(path: str | Path, source: str, what: str = "file") -> InputPath:
    """Check that ``path`` (a path or fsspec URL) is a non-empty file.

    Returns:
        A local file (a plain path or a ``file://`` URL) as a :class:`Path`,
        any other file as its URL.

    Raises:
        SourceError: The file is missing, is a folder, or has zero bytes; or
            its filesystem cannot be reached (an unknown protocol, a missing
            fsspec implementation, no access). The message names the location.
    """
    location = str(path)
    try:
        fs, inner = fsspec.core.url_to_fs(location)
        if not fs.exists(inner):
            raise SourceError(f"{source}: {what} not found: {location}")
        if fs.isdir(inner) or not fs.isfile(inner):
            raise SourceError(f"{source}: {what} is not a regular file: {location}")
        if fs.size(inner) == 0:
            raise SourceError(f"{source}: {what} is empty (0 bytes): {location}")
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(
            f"{source}: cannot check {what} {location}: {type(exc).__name__}: {exc}"
        ) from exc
    if _is_local(fs):
        return Path(inner) if is_url(location) else Path(location)
    return location


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def open_input(path: InputPath) -> IO[bytes]:
    """Open an input file for binary reading, decompressed by its extension.

    The caller closes it (``with open_input(path) as file: ...``).
    """
    opened: IO[bytes] = fsspec.open(str(path), mode="rb", compression="infer").open()
    return opened


def arrow_input(path: InputPath) -> Path | IO[bytes]:
    """What to hand pyarrow's readers: a local path as is, else an open file.

    pyarrow reads (and decompresses by extension) local paths natively; a
    file on another filesystem is opened through fsspec (decompressed by
    extension too). The open file is closed when the reader is dropped.
    """
    if isinstance(path, Path):
        return path
    return open_input(path)


def check_chunk_rows(chunk_rows: int) -> int:
    """Validate a caller's ``chunk_rows``."""
    if int(chunk_rows) < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return int(chunk_rows)


def rechunk(frames: Iterable[pd.DataFrame], chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Re-slice a stream of frames into frames of exactly ``chunk_rows`` rows.

    The last frame may be shorter. At most one pending frame plus one input
    frame is held at a time. Empty input frames are skipped; if every input
    frame is empty, the last one is yielded once (so the columns survive).
    """
    pending: list[pd.DataFrame] = []
    pending_rows = 0
    last_empty: pd.DataFrame | None = None
    yielded = False
    for frame in frames:
        if len(frame) == 0:
            last_empty = frame
            continue
        pending.append(frame)
        pending_rows += len(frame)
        if pending_rows < chunk_rows:
            continue
        buf = pending[0] if len(pending) == 1 else pd.concat(pending)
        start = 0
        while len(buf) - start >= chunk_rows:
            yield buf.iloc[start : start + chunk_rows].reset_index(drop=True)
            yielded = True
            start += chunk_rows
        pending = [buf.iloc[start:]] if start < len(buf) else []
        pending_rows = len(buf) - start
    if pending_rows:
        buf = pending[0] if len(pending) == 1 else pd.concat(pending)
        yield buf.reset_index(drop=True)
        yielded = True
    if not yielded and last_empty is not None:
        yield last_empty.reset_index(drop=True)


def _warn_coerced(where: str, column: str, count: int, kind: str) -> None:
    if count:
        logger.warning(
            "%s: column %r has %d missing or non-%s value(s); kept as missing "
            "for the validation stage to judge",
            where,
            column,
            count,
            kind,
        )


def to_integer(series: pd.Series, dtype: str, where: str) -> pd.Series:
    """Coerce a column to ``int8``/``int64`` (nullable when values are missing).

    Args:
        series: Column as parsed.
        dtype: ``"int8"`` (labels) or ``"int64"`` (ids).
        where: File (or source) name used in warnings.
    """
    if pd.api.types.is_integer_dtype(series.dtype) and not isinstance(
        series.dtype, pd.api.extensions.ExtensionDtype
    ):
        info = np.iinfo(dtype)
        if len(series) == 0 or (series.min() >= info.min and series.max() <= info.max):
            return series.astype(dtype)
    values = pd.to_numeric(series, errors="coerce")
    values = values.astype("float64")
    info = np.iinfo(dtype)
    bad = values.isna() | (values != np.round(values))
    bad |= (values < info.min) | (values > info.max)
    if not bad.any():
        return values.astype(dtype)
    _warn_coerced(where, str(series.name), int(bad.sum()), "integer")
    nullable = "Int8" if dtype == "int8" else "Int64"
    return values.mask(bad).astype(nullable)


def to_float(series: pd.Series, where: str) -> pd.Series:
    """Coerce a column to ``float64``; unparseable text becomes NaN (warned)."""
    if pd.api.types.is_float_dtype(series.dtype) or (
        pd.api.types.is_integer_dtype(series.dtype)
        and not isinstance(series.dtype, pd.api.extensions.ExtensionDtype)
    ):
        return series.astype("float64")
    values = pd.to_numeric(series, errors="coerce").astype("float64")
    newly_missing = int((values.isna() & series.notna()).sum())
    _warn_coerced(where, str(series.name), newly_missing, "numeric")
    return values


def resolve_split_paths(
    source: str,
    path: str | None,
    splits: Mapping[str, str | None],
) -> list[tuple[str | None, InputPath]]:
    """Turn ``path`` / per-split paths into ``[(split or None, InputPath)]``.

    Exactly one of ``path`` and the per-split mapping must be given. With one
    file there is no split column (``split`` is ``None``); with several files
    every row is tagged with the split of the file it came from.

    Raises:
        SourceError: Nothing or both given, an unknown split name, or a file
            that is missing or empty.
    """
    named = {k: v for k, v in splits.items() if v is not None}
    for key in named:
        if key not in SPLITS:
            raise SourceError(
                f"{source}: unknown split {key!r}; use {', '.join(SPLITS)}"
            )
    if path is not None and named:
        raise SourceError(
            f"{source}: give either `path` or per-split paths "
            f"({', '.join(SPLITS)}), not both"
        )
    if path is None and not named:
        raise SourceError(
            f"{source}: no input file; set `path` or per-split paths "
            f"({', '.join(SPLITS)})"
        )
    if path is not None:
        return [(None, require_file(path, source))]
    ordered = [s for s in SPLITS if s in named]
    files = [(s, require_file(str(named[s]), source)) for s in ordered]
    if len(files) == 1:
        return [(None, files[0][1])]
    return [(s, p) for s, p in files]


def iter_csv_chunks(
    path: InputPath,
    source: str,
    chunk_rows: int,
    **read_kwargs: Any,
) -> Iterator[pd.DataFrame]:
    """Read a CSV (plain or compressed, local or fsspec URL) with pandas in chunks.

    The file is opened with ``fsspec.open(..., compression="infer")`` and
    closed when the iteration ends. Unreadable input becomes a
    :class:`SourceError` naming the file: a parse error (pandas reports the
    line, e.g. "Expected 42 fields in line 7, saw 43"), no columns at all, a
    corrupt archive, undecodable bytes. Yields nothing when the file has a
    header but no rows.
    """
    try:
        file = open_input(path)
    except Exception as exc:
        raise _read_error(path, source, exc) from exc
    with file:
        try:
            reader = pd.read_csv(file, chunksize=chunk_rows, **read_kwargs)
        except Exception as exc:
            raise _read_error(path, source, exc) from exc
        with reader:
            while True:
                try:
                    chunk = next(reader)
                except StopIteration:
                    return
                except Exception as exc:
                    raise _read_error(path, source, exc) from exc
                yield chunk


def read_csv_header(path: InputPath, source: str, **read_kwargs: Any) -> list[str]:
    """Column names of a CSV with a header row (:class:`SourceError` if none)."""
    try:
        with open_input(path) as file:
            frame = pd.read_csv(file, nrows=0, **read_kwargs)
    except Exception as exc:
        raise _read_error(path, source, exc) from exc
    return [str(c) for c in frame.columns]


def _read_error(path: InputPath, source: str, exc: Exception) -> SourceError:
    if isinstance(exc, pd.errors.EmptyDataError):
        return SourceError(f"{source}: {path} has no columns (empty file?)")
    if isinstance(exc, pd.errors.ParserError):
        return SourceError(f"{source}: cannot parse {path}: {exc}")
    if isinstance(exc, SourceError):
        return exc
    return SourceError(f"{source}: cannot read {path}: {type(exc).__name__}: {exc}")


def add_split(frame: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """Append the ``split`` column (as strings) when ``split`` is given."""
    if split is None:
        return frame
    frame[SPLIT_COLUMN] = split
    frame[SPLIT_COLUMN] = frame[SPLIT_COLUMN].astype("str")
    return frame
