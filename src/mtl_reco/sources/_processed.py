"""Processed CSV formats (Ali-CCP, AliExpress, ...): described in YAML, read here.

A processed format is a CSV with a header whose columns are labels, integer
sparse ids, float dense values and optional integer extras. It needs no code:
one YAML description names the columns of each role (see
:class:`FormatDescription`; the built-in ones are
``mtl_reco/sources/formats/<name>.yml``), and every such source takes the
same file options (:class:`ProcessedOptions`). One file gives raw events
without a split column; several files (``train``/``valid``/``test``) are
concatenated in that order with a ``split`` column naming the file each row
came from.

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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import yaml
from pydantic import Field

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
from mtl_reco.typed_config import ConfigError, StrictConfig

logger = logging.getLogger(__name__)

BLOCK_BYTES = 8 << 20
"""Bytes of CSV text parsed per pyarrow block (bounds memory with chunk_rows)."""
_ARROW_TYPES = {"label": pa.string(), "int": pa.int64(), "float": pa.float64()}


COLUMN_ROLES = ("labels", "sparse", "dense", "extras")
"""Keys of a format description that list columns."""
_RANGE = re.compile(r"^(?P<prefix>.*?)(?P<first>\d+)\.\.(?P<last>\d+)$")


@dataclass(frozen=True)
class ProcessedFormat:
    """Column roles of a processed CSV format.

    Attributes:
        source: The source name (the description file's name).
        labels: Raw label columns.
        sparse: Integer id columns.
        dense: Float columns.
        extras: Integer columns kept with the rows, never features.
        funnel: ``(click label, conversion label)`` when the labels form a
            click -> conversion funnel.
        default_tasks: Tasks engineered when the parameters name none.
        title: CamelCase name (the options class is ``<title>Options``).
        description: One line on what the data is.
    """

    source: str
    labels: tuple[str, ...]
    sparse: tuple[str, ...]
    dense: tuple[str, ...]
    extras: tuple[str, ...] = ()
    funnel: tuple[str, str] | None = None
    default_tasks: tuple[TaskDefinition, ...] = ()
    title: str = ""
    description: str = ""

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


class TaskDescription(StrictConfig):
    """A default task of a format: ``{name: ctcvr, source: click * purchase}``.

    Attributes:
        name: Task name.
        source: A label column or a pandas expression over label columns.
        type: ``classification`` or ``regression``.
    """

    name: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: Literal["classification", "regression"] = "classification"


class FormatDescription(StrictConfig):
    """What a format description file (``formats/<name>.yml``) holds.

    Column lists name columns of the CSV header; an entry ``prefix<a>..<b>``
    stands for ``prefix<a>``, ..., ``prefix<b>`` (``categorical_1..16``), and
    a single string is a list of one entry.

    Attributes:
        title: CamelCase name (default: from the file name, ``ali_ccp`` ->
            ``AliCcp``); the options class is ``<title>Options``.
        description: One line on what the data is.
        labels: Raw label columns (0/1 as found; judged by validation).
        sparse: Integer id columns (categorical features).
        dense: Float columns (numeric features).
        extras: Integer columns kept with the rows, never features.
        funnel: ``[click label, conversion label]`` when the labels form a
            click -> conversion funnel (a conversion implies a click).
        default_tasks: Tasks made when the parameters name none.
    """

    title: str | None = Field(default=None, pattern=r"^[A-Z][A-Za-z0-9]*$")
    description: str = ""
    labels: list[str] = Field(min_length=1)
    sparse: list[str] = Field(default_factory=list)
    dense: list[str] = Field(default_factory=list)
    extras: list[str] = Field(default_factory=list)
    funnel: list[str] | None = Field(default=None, min_length=2, max_length=2)
    default_tasks: list[TaskDescription] = Field(default_factory=list)


class ProcessedOptions(StrictConfig):
    """Options of every processed-CSV source (its input files).

    Give one file with ``path`` (the rows carry no split) or any of
    ``train``/``valid``/``test`` (with two or more, each row's ``split``
    column names its file). Files are catalog entries (``<source>_files``).

    Attributes:
        path: One processed CSV; no split column.
        train: Train CSV.
        valid: Validation CSV.
        test: Test CSV.
    """

    path: str | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None


def load_format(path: Path | str, name: str | None = None) -> ProcessedFormat:
    """Read and check a format description file.

    Args:
        path: The YAML file.
        name: Source name (default: the file name without ``.yml``).

    Raises:
        SourceError: Unreadable YAML or a description that breaks a rule; the
            message names the file, the key and the rule.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SourceError(
            f"{path}: cannot read the format description: {' '.join(str(exc).split())}"
        ) from None
    return parse_format(name or path.stem, raw, str(path))


def parse_format(name: str, raw: Any, where: str | None = None) -> ProcessedFormat:
    """Check a format description (a parsed YAML mapping) and build the format.

    Args:
        name: Source name.
        raw: The description (see :class:`FormatDescription`).
        where: What to name in messages (default: ``format '<name>'``).

    Raises:
        SourceError: The description breaks a rule (one line naming
            ``where``, the key and the rule).
    """
    where = where or f"format {name!r}"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise SourceError(
            f"{where}: source name {name!r} must be lowercase letters, digits and "
            "underscores, starting with a letter (it names the catalog entry "
            f"'{name}_files' and the parameter block sources.{name})"
        )
    if not isinstance(raw, Mapping):
        raise SourceError(
            f"{where}: a format description is a mapping (labels, sparse, dense, "
            f"...), got {type(raw).__name__}"
        )
    raw = dict(raw)
    for key in COLUMN_ROLES:
        if key in raw:
            raw[key] = _expand(where, key, raw[key])
    try:
        desc = FormatDescription.from_dict(raw)
    except ConfigError as exc:
        raise SourceError(f"{where}: {exc}") from None
    roles = {key: getattr(desc, key) for key in COLUMN_ROLES}
    seen: dict[str, str] = {}
    for role, columns in roles.items():
        for column in columns:
            if column == SPLIT_COLUMN:
                raise SourceError(
                    f"{where}: {role} names the column '{SPLIT_COLUMN}', which is "
                    "reserved for the split given by per-split files"
                )
            if column in seen:
                twice = f"{seen[column]} and {role}" if seen[column] != role else role
                raise SourceError(
                    f"{where}: column {column!r} is listed twice ({twice})"
                )
            seen[column] = role
    if not desc.sparse and not desc.dense:
        raise SourceError(
            f"{where}: no feature column: list sparse and/or dense columns"
        )
    funnel = None
    if desc.funnel is not None:
        outside = [c for c in desc.funnel if c not in desc.labels]
        if outside:
            raise SourceError(
                f"{where}: funnel names {outside[0]!r}, which is not a label column "
                f"(labels: {', '.join(desc.labels)})"
            )
        funnel = (desc.funnel[0], desc.funnel[1])
    names = [t.name for t in desc.default_tasks]
    twice_named = sorted({n for n in names if names.count(n) > 1})
    if twice_named:
        raise SourceError(f"{where}: default task {twice_named[0]!r} is defined twice")
    return ProcessedFormat(
        source=name,
        labels=tuple(desc.labels),
        sparse=tuple(desc.sparse),
        dense=tuple(desc.dense),
        extras=tuple(desc.extras),
        funnel=funnel,
        default_tasks=tuple(
            TaskDefinition(t.name, t.source, t.type) for t in desc.default_tasks
        ),
        title=desc.title or "".join(p.capitalize() for p in name.split("_")),
        description=desc.description,
    )


def _expand(where: str, key: str, value: Any) -> Any:
    """A column list with ``prefix<a>..<b>`` entries expanded."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return value  # the model says what is wrong
    out: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise SourceError(
                f"{where}: {key} lists {item!r}, which is not a column name: quote "
                "column names that look like numbers (YAML reads 101 as a number "
                "and 109_14 as 10914)"
            )
        found = _RANGE.match(item)
        if found is None:
            out.append(item)
            continue
        first, last = int(found["first"]), int(found["last"])
        if first > last:
            raise SourceError(
                f"{where}: {key} range {item!r} counts down; write "
                f"{found['prefix']}{last}..{first}"
            )
        out.extend(f"{found['prefix']}{i}" for i in range(first, last + 1))
    return out


def read_format(
    fmt: ProcessedFormat, options: ProcessedOptions
) -> tuple[RawSchema, SourceTable]:
    """Open a processed format's files (see :func:`read_processed`)."""
    return read_processed(
        fmt,
        options.path,
        {"train": options.train, "valid": options.valid, "test": options.test},
    )


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
