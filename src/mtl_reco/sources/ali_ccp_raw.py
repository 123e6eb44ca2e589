"""Ali-CCP in the raw Tianchi format, parsed as a stream.

Input (see ``ali-ccp/RAW_FORMAT.md``), in one ``directory``:

* ``sample_skeleton_{train,test}.csv``: one impression per line,
  ``sample_id,click,purchase,common_feature_index,feature_num,feature_list``;
* ``common_features_{train,test}.csv``: one shared user/context bundle per
  line, ``common_feature_index,feature_num,feature_list``.

A ``feature_list`` packs features separated by byte ``0x01``; one feature is
``<field>0x02<feature id>0x03<value>``. Either file name may end in ``.gz``.

Output: exactly the columns of the processed ``ali_ccp`` source, so every
later stage is identical: ``click``, ``purchase`` (as found, ``int8``), the 23
sparse fields (the raw global feature id as ``int64``; for a multi-valued
field the *last* id on the line; a missing field is ``0``), the 8 dense
fields ``D<field>`` (the float value attached to that same last feature;
missing is ``0.0``). Features of the common-features row come first and the
skeleton row's own features after them, so a field present on both sides
takes the skeleton's value. Fields outside the 23 are ignored.

Splits: with both parts read, skeleton train rows are ``train`` and skeleton
test rows are split into ``valid``/``test`` by a seeded hash of ``sample_id``
(``test_valid_fraction`` of them go to ``valid``), and a ``split`` column is
emitted. Reading a single part gives no split column.

Streaming and memory: the skeleton is read block by block (pyarrow CSV,
strict about the field count), so it never has to fit in memory. The common
features of the part being read are reduced, while streaming that file, to a
compact table keyed by ``common_feature_index``: per key 23 ids (``int64``),
23 values (``float64``) and 23 presence flags, about 400 bytes plus the key
string, i.e. roughly 0.3 GB for the ~730 k bundles of one Tianchi part. It
is rebuilt for each part on every iteration (nothing is cached between
iterations) and released before the next part is read.

A skeleton row whose ``common_feature_index`` has no common-features row is
an error by default (``on_missing_common="error"``: a
:class:`~mtl_reco.sources.base.SourceError` naming the skeleton file, line and
key; a mismatched pair of files is the usual cause). With
``on_missing_common="zero"`` such rows keep only their skeleton features (the
user-side fields are ``0``/``0.0``) and their number is logged as a warning
per part. A line with a wrong number of fields, or a malformed feature,
raises a :class:`~mtl_reco.sources.base.SourceError` naming file and line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pydantic import Field, field_validator

from mtl_reco.sources._common import (
    SourceTable,
    add_split,
    check_chunk_rows,
    rechunk,
    require_file,
    to_integer,
)
from mtl_reco.sources.ali_ccp import DEFAULT_TASKS, DENSE, LABELS, SPARSE
from mtl_reco.sources.base import SPLIT_COLUMN, RawSchema, SourceError
from mtl_reco.typed_config import ConfigError, StrictConfig

logger = logging.getLogger(__name__)

SOURCE_NAME = "ali_ccp_raw"
FIELDS = SPARSE
"""The 23 fields kept, in output order (their ids are the sparse columns)."""
DENSE_FIELDS = tuple(d[1:] for d in DENSE)
"""Fields whose values become the dense columns (``D<field>``)."""
SKELETON_COLUMNS = (
    "sample_id",
    "click",
    "purchase",
    "common_feature_index",
    "feature_num",
    "feature_list",
)
COMMON_COLUMNS = ("common_feature_index", "feature_num", "feature_list")
BLOCK_BYTES = 16 << 20
"""Bytes of raw text parsed per block (bounds parsing memory)."""

_FEATURE = re.compile(
    r"^(?P<field>[^\x02\x03]*)\x02(?P<id>[^\x02\x03]*)\x03(?P<value>[^\x02\x03]*)$"
)
_FIELD_INDEX = {f: i for i, f in enumerate(FIELDS)}
_DENSE_INDEX = np.array([_FIELD_INDEX[f] for f in DENSE_FIELDS])

Part = Literal["train", "test"]


class AliCcpRawOptions(StrictConfig):
    """Options of the ``ali_ccp_raw`` source.

    Attributes:
        directory: Folder holding ``sample_skeleton_<part>.csv`` and
            ``common_features_<part>.csv`` (optionally ``.gz``).
        parts: Which Tianchi parts to read (``train`` and/or ``test``).
        test_valid_fraction: Share of the skeleton test rows assigned to
            ``valid`` (the rest are ``test``) when both parts are read.
        seed: Key of the hash that assigns test rows to valid/test.
        on_missing_common: ``error`` or ``zero`` for a skeleton row whose
            common-features row does not exist (see the module docstring).
    """

    directory: str | None = None
    parts: tuple[Part, ...] = ("train", "test")
    test_valid_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    seed: int = Field(default=2022, ge=0)
    on_missing_common: Literal["error", "zero"] = "error"

    @field_validator("parts", mode="after")
    @classmethod
    def _parts_once(cls, parts: tuple[Part, ...]) -> tuple[Part, ...]:
        """Each part at most once, at least one."""
        if not parts or len(set(parts)) != len(parts):
            raise ConfigError(f"name train and/or test once, got {list(parts)}")
        return parts


def raw_schema(with_split: bool) -> RawSchema:
    """Same columns and roles as the processed ``ali_ccp`` source."""
    return RawSchema(
        source=SOURCE_NAME,
        labels=LABELS,
        sparse=SPARSE,
        dense=DENSE,
        split_column=SPLIT_COLUMN if with_split else None,
        funnel=("click", "purchase"),
        default_tasks=DEFAULT_TASKS,
    )


def _find(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (directory / name).exists():
            return Path(require_file(directory / name, SOURCE_NAME))
    return Path(require_file(directory / f"{stem}.csv", SOURCE_NAME))


def read_ali_ccp_raw(options: AliCcpRawOptions) -> tuple[RawSchema, SourceTable]:
    """Check the files and return the schema with a lazy chunked table."""
    if options.directory is None:
        raise SourceError(f"{SOURCE_NAME}: set `directory` (the raw files' folder)")
    directory = Path(options.directory)
    if not directory.is_dir():
        raise SourceError(f"{SOURCE_NAME}: directory not found: {directory}")
    order = [p for p in ("train", "test") if p in options.parts]
    files = [
        (
            part,
            _find(directory, f"sample_skeleton_{part}"),
            _find(directory, f"common_features_{part}"),
        )
        for part in order
    ]
    with_split = len(files) == 2
    schema = raw_schema(with_split)

    def produce(chunk_rows: int) -> Iterator[pd.DataFrame]:
        chunk_rows = check_chunk_rows(chunk_rows)
        for part, skeleton, common in files:
            frames = _iter_part(options, part, skeleton, common, with_split)
            yield from rechunk(frames, chunk_rows)

    return schema, SourceTable(produce, schema.columns)


# --------------------------------------------------------------------------
# parsing


def _open(path: Path, columns: tuple[str, ...]) -> pacsv.CSVStreamingReader:
    try:
        return pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                use_threads=False, block_size=BLOCK_BYTES, column_names=list(columns)
            ),
            parse_options=pacsv.ParseOptions(
                quote_char=False, double_quote=False, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()),
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise _arrow_error(path, exc) from exc


def _batches(path: Path, columns: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    reader = _open(path, columns)
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError) as exc:
            raise _arrow_error(path, exc) from exc
        if batch.num_rows:
            yield batch


def _arrow_error(path: Path, exc: Exception) -> SourceError:
    message = str(exc)
    found = re.search(r"Row #(\d+)", message)
    where = f"{path} line {found.group(1)}" if found else str(path)
    return SourceError(f"{SOURCE_NAME}: cannot read {where}: {message}")


@dataclass
class _Parsed:
    """The 23 kept fields of ``n`` lines: last id, its value, presence."""

    ids: np.ndarray  # (n, 23) int64
    values: np.ndarray  # (n, 23) float64
    present: np.ndarray  # (n, 23) bool


def _parse(
    feature_list: pa.Array,
    feature_num: pa.Array,
    path: Path,
    first_line: int,
) -> _Parsed:
    """Parse packed feature lists; ``first_line`` is the line of row 0."""
    n = len(feature_list)
    lists = pc.split_pattern(feature_list, "\x01")
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(lists)
    rows = np.repeat(np.arange(n), lengths)
    keep = pc.not_equal(pc.utf8_length(flat), 0)  # tolerate empty lists
    flat = pc.filter(flat, keep)
    rows = rows[keep.to_numpy(zero_copy_only=False)]
    _check_counts(rows, n, feature_num, path, first_line)

    parts = pc.extract_regex(flat, _FEATURE.pattern)
    valid = parts.is_valid().to_numpy(zero_copy_only=False)
    if not valid.all():
        bad = int(np.flatnonzero(~valid)[0])
        raise SourceError(
            f"{SOURCE_NAME}: {path} line {first_line + int(rows[bad])}: malformed "
            f"feature {flat[bad].as_py()!r} (expected field\\x02id\\x03value)"
        )
    field_pos = pc.index_in(parts.field("field"), value_set=pa.array(FIELDS))
    wanted = field_pos.is_valid()
    field_idx = pc.filter(field_pos, wanted).to_numpy(zero_copy_only=False)
    rows = rows[wanted.to_numpy(zero_copy_only=False)]
    raw_ids = pc.filter(parts.field("id"), wanted)
    raw_values = pc.filter(parts.field("value"), wanted)
    ids = _cast(raw_ids, pa.int64(), rows, path, first_line, "feature id")
    values = _cast(raw_values, pa.float64(), rows, path, first_line, "value")

    out = _Parsed(
        ids=np.zeros((n, len(FIELDS)), np.int64),
        values=np.zeros((n, len(FIELDS)), np.float64),
        present=np.zeros((n, len(FIELDS)), bool),
    )
    if len(rows):
        cell = rows * len(FIELDS) + field_idx
        # last occurrence of every (row, field): first one in reversed order
        cells, first_rev = np.unique(cell[::-1], return_index=True)
        last = len(cell) - 1 - first_rev
        out.ids.reshape(-1)[cells] = ids[last]
        out.values.reshape(-1)[cells] = values[last]
        out.present.reshape(-1)[cells] = True
    return out


def _cast(
    text: pa.Array,
    to: pa.DataType,
    rows: np.ndarray,
    path: Path,
    first_line: int,
    what: str,
) -> np.ndarray:
    try:
        return np.asarray(pc.cast(text, to).to_numpy(zero_copy_only=False))
    except pa.ArrowInvalid:
        pass
    for i, value in enumerate(text.to_pylist()):
        try:
            pa.array([value]).cast(to)
        except pa.ArrowInvalid:
            raise SourceError(
                f"{SOURCE_NAME}: {path} line {first_line + int(rows[i])}: "
                f"{what} {value!r} is not a number"
            ) from None
    raise SourceError(f"{SOURCE_NAME}: {path}: unparseable {what}")  # unreachable


def _check_counts(
    rows: np.ndarray, n: int, feature_num: pa.Array, path: Path, first_line: int
) -> None:
    """Warn (once per block) when ``feature_num`` disagrees with the list."""
    declared = pd.to_numeric(
        pd.Series(feature_num.to_numpy(zero_copy_only=False)), errors="coerce"
    ).to_numpy()
    found = np.bincount(rows, minlength=n)
    mismatch = ~(declared == found)
    if mismatch.any():
        first = int(np.flatnonzero(mismatch)[0])
        logger.warning(
            "%s: %s: %d line(s) where feature_num differs from the number of "
            "features (first: line %d)",
            SOURCE_NAME,
            path,
            int(mismatch.sum()),
            first_line + first,
        )


@dataclass
class _CommonTable:
    """Common features of one part: key -> row of parsed fields."""

    index: pd.Index
    parsed: _Parsed


def _load_common(path: Path) -> _CommonTable:
    keys: list[np.ndarray] = []
    parsed: list[_Parsed] = []
    line = 1
    for batch in _batches(path, COMMON_COLUMNS):
        parsed.append(
            _parse(
                batch.column("feature_list"), batch.column("feature_num"), path, line
            )
        )
        keys.append(batch.column("common_feature_index").to_numpy(zero_copy_only=False))
        line += batch.num_rows
    if not parsed:
        raise SourceError(f"{SOURCE_NAME}: {path} has no lines")
    all_keys = pd.Index(np.concatenate(keys))
    table = _Parsed(
        ids=np.concatenate([p.ids for p in parsed]),
        values=np.concatenate([p.values for p in parsed]),
        present=np.concatenate([p.present for p in parsed]),
    )
    if not all_keys.is_unique:
        last = ~all_keys.duplicated(keep="last")
        logger.warning(
            "%s: %s repeats %d common_feature_index key(s); the last line wins",
            SOURCE_NAME,
            path,
            int((~last).sum()),
        )
        all_keys = all_keys[last]
        table = _Parsed(table.ids[last], table.values[last], table.present[last])
    logger.info("%s: %s: %d common feature rows", SOURCE_NAME, path, len(all_keys))
    return _CommonTable(all_keys, table)


def _iter_part(
    options: AliCcpRawOptions,
    part: str,
    skeleton: Path,
    common_path: Path,
    with_split: bool,
) -> Iterator[pd.DataFrame]:
    common = _load_common(common_path)
    line = 1
    unmatched = 0
    for batch in _batches(skeleton, SKELETON_COLUMNS):
        n = batch.num_rows
        own = _parse(
            batch.column("feature_list"), batch.column("feature_num"), skeleton, line
        )
        keys = batch.column("common_feature_index").to_numpy(zero_copy_only=False)
        pos = common.index.get_indexer(keys)
        missing = pos < 0
        if missing.any():
            if options.on_missing_common == "error":
                first = int(np.flatnonzero(missing)[0])
                raise SourceError(
                    f"{SOURCE_NAME}: {skeleton} line {line + first}: "
                    f"common_feature_index {keys[first]!r} has no row in "
                    f"{common_path} (set on_missing_common: zero to keep such rows)"
                )
            unmatched += int(missing.sum())
        merged = _merge(common.parsed, pos, own)
        sample_ids = batch.column("sample_id").to_numpy(zero_copy_only=False)
        yield _frame(batch, merged, part, sample_ids, options, with_split, skeleton)
        line += n
    if unmatched:
        logger.warning(
            "%s: %d skeleton row(s) of %s had no common-features row in %s; "
            "their user-side fields are 0",
            SOURCE_NAME,
            unmatched,
            skeleton,
            common_path,
        )
    if line == 1:
        raise SourceError(f"{SOURCE_NAME}: {skeleton} has no lines")


def _merge(common: _Parsed, pos: np.ndarray, own: _Parsed) -> _Parsed:
    """Common-side fields, overridden by the skeleton's own fields."""
    found = pos >= 0
    safe = np.where(found, pos, 0)
    ids = np.where(found[:, None], common.ids[safe], 0)
    values = np.where(found[:, None], common.values[safe], 0.0)
    ids = np.where(own.present, own.ids, ids)
    values = np.where(own.present, own.values, values)
    return _Parsed(ids, values, own.present | (found[:, None] & common.present[safe]))


def _frame(
    batch: pa.RecordBatch,
    merged: _Parsed,
    part: str,
    sample_ids: np.ndarray,
    options: AliCcpRawOptions,
    with_split: bool,
    skeleton: Path,
) -> pd.DataFrame:
    where = str(skeleton)
    cols: dict[str, object] = {
        "click": to_integer(
            pd.Series(batch.column("click").to_pandas(), name="click"), "int8", where
        ),
        "purchase": to_integer(
            pd.Series(batch.column("purchase").to_pandas(), name="purchase"),
            "int8",
            where,
        ),
    }
    for j, field in enumerate(FIELDS):
        cols[field] = merged.ids[:, j]
    for name, j in zip(DENSE, _DENSE_INDEX, strict=True):
        cols[name] = merged.values[:, j]
    frame = pd.DataFrame(cols)
    if not with_split:
        return frame
    split = "train" if part == "train" else None
    if split is not None:
        return add_split(frame, split)
    to_valid = hash_fraction(sample_ids, options.seed) < options.test_valid_fraction
    frame[SPLIT_COLUMN] = pd.Series(
        np.where(to_valid, "valid", "test"), dtype="str", index=frame.index
    )
    return frame


def hash_fraction(sample_ids: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-uniform number in [0, 1) per ``sample_id`` string."""
    key = f"{seed % 10**16:016d}"
    hashed = pd.util.hash_array(np.asarray(sample_ids, dtype=object), hash_key=key)
    return np.asarray((hashed >> np.uint64(11)).astype(np.float64) * 2.0**-53)
