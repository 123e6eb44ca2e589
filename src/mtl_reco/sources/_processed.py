"""Generic reader for already-processed CSV formats (Ali-CCP, AliExpress).

A processed format is a CSV with a header whose columns are labels, integer
sparse ids, float dense values and optional integer extras. One file gives
raw events without a split column; several files (``train``/``valid``/
``test``) are concatenated in that order with a ``split`` column naming the
file each row came from.

Files are streamed with pyarrow's CSV reader, which is strict about the field
count: a line with too few or too many fields raises
:class:`~mtl_reco.sources.base.SourceError` naming the file and line, and so
does a sparse/dense value that is not a number (the message also names the
column by its header name, e.g. ``column '101': CSV conversion error to
int64: invalid value 'abc'``). Nothing is cleaned: labels
(read as text) are kept as found (``int8``, or nullable ``Int8``
for a chunk with missing/unparseable values), sparse ids become ``int64``
(nullable ``Int64`` likewise), dense values ``float64``. A column of the
format that is missing from a file is left out of the output (for every file,
so all chunks share one column set) with a warning naming the file; the
validation stage then reports it. Columns the format does not know are
dropped with a warning.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from mtl_reco.sources._common import (
    InputPath,
    SourceTable,
    add_split,
    arrow_input,
    check_chunk_rows,
    read_csv_header,
    rechunk,
    resolve_split_paths,
    to_float,
    to_integer,
)
from mtl_reco.sources.base import SPLIT_COLUMN, RawSchema, SourceError, TaskDefinition

logger = logging.getLogger(__name__)

BLOCK_BYTES = 8 << 20
"""Bytes of CSV text parsed per pyarrow block (bounds memory with chunk_rows)."""
_ARROW_TYPES = {"label": pa.string(), "int": pa.int64(), "float": pa.float64()}


@dataclass(frozen=True)
class ProcessedFormat:
    """Column roles of a processed CSV format."""

    source: str
    labels: tuple[str, ...]
    sparse: tuple[str, ...]
    dense: tuple[str, ...]
    extras: tuple[str, ...] = ()
    funnel: tuple[str, str] | None = None
    default_tasks: tuple[TaskDefinition, ...] = ()

    def schema(self, with_split: bool) -> RawSchema:
        """The raw schema (with or without the split column)."""
        return RawSchema(
            source=self.source,
            labels=self.labels,
            sparse=self.sparse,
            dense=self.dense,
            extras=self.extras,
            split_column=SPLIT_COLUMN if with_split else None,
            funnel=self.funnel,
            default_tasks=self.default_tasks,
        )

    def kind(self, column: str) -> str:
        """``label``, ``int`` (sparse ids and extras) or ``float``."""
        if column in self.labels:
            return "label"
        if column in self.dense:
            return "float"
        return "int"


def read_processed(
    fmt: ProcessedFormat,
    path: str | None,
    splits: dict[str, str | None],
) -> tuple[RawSchema, SourceTable]:
    """Check the files and return the schema with a lazy chunked table.

    The table's ``files`` list ``(split or None, path)`` in reading order.
    """
    files = resolve_split_paths(fmt.source, path, splits)
    schema = fmt.schema(with_split=files[0][0] is not None)

    def produce(chunk_rows: int) -> Iterator[pd.DataFrame]:
        chunk_rows = check_chunk_rows(chunk_rows)
        columns = _common_columns(fmt, schema, [p for _, p in files])
        for split, file in files:
            yield from _iter_file(fmt, file, split, columns, chunk_rows)

    return schema, SourceTable(produce, None, files=files)


def _common_columns(
    fmt: ProcessedFormat, schema: RawSchema, paths: Sequence[InputPath]
) -> list[str]:
    """Format columns present in every file, in schema order (others warned)."""
    wanted = [c for c in schema.columns if c != SPLIT_COLUMN]
    present = set(wanted)
    for path in paths:
        header = read_csv_header(path, fmt.source)
        missing = [c for c in wanted if c not in header]
        unknown = [c for c in header if c not in wanted]
        if missing:
            logger.warning(
                "%s: %s lacks column(s) %s; they are left out of the raw events",
                fmt.source,
                path,
                missing,
            )
        if unknown:
            logger.warning(
                "%s: %s has column(s) %s that the format does not define; ignored",
                fmt.source,
                path,
                unknown,
            )
        present &= set(header)
    return [c for c in wanted if c in present]


def _iter_file(
    fmt: ProcessedFormat,
    path: InputPath,
    split: str | None,
    columns: list[str],
    chunk_rows: int,
) -> Iterator[pd.DataFrame]:
    """Stream one file with pyarrow's CSV reader (strict field count)."""
    where = str(path)
    types = {c: _ARROW_TYPES[fmt.kind(c)] for c in columns}
    try:
        reader = pacsv.open_csv(
            arrow_input(path),  # a local path, or an fsspec file for a URL
            read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=columns, strings_can_be_null=True
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise _arrow_error(fmt.source, path, exc) from exc
    frames = _iter_batches(fmt, reader, path)
    empty = True
    for frame in rechunk(frames, chunk_rows):
        empty = False
        yield add_split(_convert(fmt, frame, where), split)
    if empty:
        blank = pd.DataFrame({c: np.zeros(0, np.int64) for c in columns})
        yield add_split(_convert(fmt, blank, where), split)


def _iter_batches(
    fmt: ProcessedFormat, reader: pacsv.CSVStreamingReader, path: InputPath
) -> Iterator[pd.DataFrame]:
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError) as exc:
            raise _arrow_error(fmt.source, path, exc) from exc
        if batch.num_rows:
            yield batch.to_pandas()


def _arrow_error(source: str, path: InputPath, exc: Exception) -> SourceError:
    """Turn pyarrow's "Row #N" / "column #N" into a file, line and column name.

    pyarrow's ``Row #N`` is the 1-based physical line (the header is line 1)
    and its ``column #N`` the 0-based position of the column in the file,
    also when ``include_columns`` reads only some of them; the header names
    it. Without a row number (pyarrow omits it when it parses in threads)
    only the file is named.
    """
    message = str(exc)
    found = re.search(r"Row #(\d+)", message)
    where = f"{path} line {found.group(1)}" if found else str(path)
    column = re.match(r"In CSV column #(\d+): (?:Row #\d+: )?", message)
    if column:
        index = int(column.group(1))
        header = _header_or_none(path, source)
        name = (
            repr(header[index])
            if header is not None and index < len(header)
            else f"#{index} (0-based)"
        )
        message = f"column {name}: {message[column.end() :]}"
    return SourceError(f"{source}: cannot read {where}: {message}")


def _header_or_none(path: InputPath, source: str) -> list[str] | None:
    try:
        return read_csv_header(path, source)
    except SourceError:
        return None


def _convert(fmt: ProcessedFormat, raw: pd.DataFrame, where: str) -> pd.DataFrame:
    out: dict[str, pd.Series] = {}
    for col in raw.columns:
        kind = fmt.kind(str(col))
        if kind == "label":
            out[col] = to_integer(raw[col], "int8", where)
        elif kind == "float":
            out[col] = to_float(raw[col], where)
        else:
            out[col] = to_integer(raw[col], "int64", where)
    return pd.DataFrame(out, index=raw.index)
