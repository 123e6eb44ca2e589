"""Encoded splits read block by block: streaming input and per-rank shards.

A split that does not fit in memory is read the way it is stored: parquet
row groups. :class:`StreamingTable` is a
:class:`~mtl_reco.modeling.data.BatchSource` (what the trainer and the
evaluation read) that never holds the split:

* each epoch the order of its blocks (row groups, or parts of them) is
  shuffled with the run's seeded generator, blocks are appended to a buffer
  of ``buffer_rows`` rows, and the buffer is shuffled and cut into batches
  (the rows left over, fewer than a batch, wait for the next fill), so the
  batch count is the same as in memory and the memory held is about the
  buffer, one block and the prefetched batches;
* batches are prepared on a background thread (``prefetch`` of them ahead;
  pinned memory when they go to CUDA), while the model trains on the
  previous ones;
* labels and extras (a few small columns) are read whole when the metrics
  need them; the inputs never are.

:func:`load_rows` reads a split, or a range of its rows, into a
:class:`~mtl_reco.modeling.data.TensorTable` block by block into
preallocated arrays, so memory mode needs the table's size once rather than
a DataFrame and a copy. :func:`shard_rows` gives each rank of a
data-parallel run its range of rows.

No framework import here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtl_reco.modeling.data import Batch, TensorTable, batch_count
from mtl_reco.schema import FeatureSchema, SchemaError
from mtl_reco.tables import DEFAULT_CHUNK_ROWS, ParquetTable, Table

__all__ = [
    "RowBlocks",
    "StreamingTable",
    "available_memory_bytes",
    "load_rows",
    "shard_rows",
]

logger = logging.getLogger(__name__)

Piece = tuple[int, int, int]
"""Rows ``[start, stop)`` of block ``index``: ``(index, start, stop)``."""


class RowBlocks:
    """Random access to a table in blocks of rows.

    A parquet file is read by row groups (each read on its own, any order);
    any other table is converted to Arrow once and cut into blocks of
    ``block_rows`` rows.

    Args:
        table: A :class:`~mtl_reco.tables.ParquetTable` (streamed), another
            table or a DataFrame (held in memory).
        block_rows: Block size for tables that are not parquet files.
    """

    def __init__(
        self, table: Table | pd.DataFrame, block_rows: int = DEFAULT_CHUNK_ROWS
    ) -> None:
        self.path: Path | None = None
        self._arrow: pa.Table | None = None
        if isinstance(table, ParquetTable):
            self.path = table.path
            meta = pq.ParquetFile(self.path).metadata
            self.sizes = [
                meta.row_group(i).num_rows for i in range(meta.num_row_groups)
            ]
            self.columns = list(pq.read_schema(self.path).names)
        else:
            frame = table if isinstance(table, pd.DataFrame) else table.to_pandas()
            self._arrow = pa.Table.from_pandas(frame, preserve_index=False)
            n = self._arrow.num_rows
            step = max(1, block_rows)
            self.sizes = [min(step, n - s) for s in range(0, n, step)]
            self.columns = [str(c) for c in self._arrow.column_names]
        self.num_rows = int(sum(self.sizes))

    def pieces(self, start: int = 0, stop: int | None = None) -> list[Piece]:
        """The blocks (or parts of blocks) that cover rows ``[start, stop)``."""
        stop = self.num_rows if stop is None else stop
        out: list[Piece] = []
        offset = 0
        for index, size in enumerate(self.sizes):
            lo, hi = max(start, offset), min(stop, offset + size)
            if lo < hi:
                out.append((index, lo - offset, hi - offset))
            offset += size
        return out

    def read(self, piece: Piece, columns: Sequence[str]) -> pa.Table:
        """The rows of ``piece``, only ``columns``."""
        index, start, stop = piece
        if self._arrow is not None:
            offset = sum(self.sizes[:index])
            return self._arrow.select(list(columns)).slice(offset + start, stop - start)
        file = pq.ParquetFile(self.path, pre_buffer=False)
        block = file.read_row_group(index, columns=list(columns))
        return block.slice(start, stop - start)

    def digest(self, start: int, stop: int) -> str:
        """Content hash of rows ``[start, stop)`` (a parquet file: its bytes)."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{start}:{stop}".encode())
        if self.path is not None:
            with open(self.path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
        else:
            assert self._arrow is not None
            for name in self.columns:
                array = self._arrow.column(name).slice(start, stop - start).to_numpy()
                digest.update(f"{name}{array.dtype.str}".encode())
                if array.dtype != object:
                    digest.update(np.ascontiguousarray(array).view(np.uint8).data)
                else:
                    digest.update(repr(array.tolist()).encode())
        return digest.hexdigest()


def shard_rows(
    n_rows: int, rank: int, world_size: int, *, equal: bool
) -> tuple[int, int]:
    """Rows ``[start, stop)`` of one rank's shard.

    Args:
        n_rows: Rows of the split.
        rank: This rank.
        world_size: Number of ranks.
        equal: Every shard gets ``n_rows // world_size`` rows (training: every
            rank must run the same number of steps; the last
            ``n_rows % world_size`` rows are left out); else the shards cover
            every row, their sizes differing by at most one (evaluation).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    if equal:
        size = n_rows // world_size
        return rank * size, (rank + 1) * size
    base, extra = divmod(n_rows, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _layout(
    columns: Sequence[str], schema: FeatureSchema, tasks: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    sparse, dense = schema.sparse_names, schema.dense_names
    missing = [c for c in [*sparse, *dense, *tasks] if c not in columns]
    if missing:
        raise SchemaError(
            f"encoded table lacks columns required by the schema: {missing}"
        )
    return list(sparse), list(dense), list(tasks)


def _fill(out: np.ndarray, block: pa.Table, names: Sequence[str], at: int) -> None:
    for j, name in enumerate(names):
        out[at : at + block.num_rows, j] = block.column(name).to_numpy()


def _matrices(
    block: pa.Table, groups: Sequence[tuple[Sequence[str], type]]
) -> list[np.ndarray]:
    out = []
    for names, dtype in groups:
        array = np.empty((block.num_rows, len(names)), dtype=dtype)
        _fill(array, block, names, 0)
        out.append(array)
    return out


def _column_arrays(
    blocks: RowBlocks, pieces: Sequence[Piece], names: Sequence[str]
) -> dict[str, np.ndarray]:
    if not names:
        return {}
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for piece in pieces:
        block = blocks.read(piece, names)
        for name in names:
            parts[name].append(block.column(name).to_numpy())
    return {
        name: np.concatenate(chunks) if chunks else np.zeros(0)
        for name, chunks in parts.items()
    }


def load_rows(
    table: Table | pd.DataFrame,
    schema: FeatureSchema,
    tasks: Sequence[str] | None = None,
    extra_columns: Sequence[str] = (),
    rows: tuple[int, int] | None = None,
) -> TensorTable:
    """Read a split (or rows ``[start, stop)`` of it) into a TensorTable.

    Block by block into preallocated tensors: the peak is the table plus one
    block, not a DataFrame plus a copy.
    """
    blocks = RowBlocks(table)
    task_names = tuple(schema.task_names if tasks is None else tasks)
    sparse_names, dense_names, label_names = _layout(blocks.columns, schema, task_names)
    start, stop = rows if rows is not None else (0, blocks.num_rows)
    pieces = blocks.pieces(start, stop)
    n = stop - start
    sparse = np.empty((n, len(sparse_names)), dtype=np.int32)
    dense = np.empty((n, len(dense_names)), dtype=np.float32)
    labels = np.empty((n, len(label_names)), dtype=np.float32)
    at = 0
    for piece in pieces:
        block = blocks.read(piece, [*sparse_names, *dense_names, *label_names])
        _fill(sparse, block, sparse_names, at)
        _fill(dense, block, dense_names, at)
        _fill(labels, block, label_names, at)
        at += block.num_rows
        del block
    extras = [
        c
        for c in dict.fromkeys([*schema.extras, *extra_columns])
        if c in blocks.columns
    ]
    return TensorTable(
        sparse=torch.from_numpy(sparse),
        dense=torch.from_numpy(dense),
        labels=torch.from_numpy(labels),
        task_names=task_names,
        extras=_column_arrays(blocks, pieces, extras),
    )


class StreamingTable:
    """A split read from disk batch by batch (a ``BatchSource``).

    Args:
        table: The encoded split (a parquet table is streamed; anything else
            is held in Arrow form and cut into blocks).
        schema: Feature schema of the encoded data.
        tasks: Label columns (default: every schema task).
        extra_columns: More passthrough columns (e.g. a GAUC group key).
        rows: Only rows ``[start, stop)`` (a rank's shard), default all.
        buffer_rows: Rows of the shuffle buffer.
        prefetch: Batches prepared ahead on the background thread.
        block_rows: Block size when ``table`` is not a parquet file.
    """

    def __init__(
        self,
        table: Table | pd.DataFrame,
        schema: FeatureSchema,
        tasks: Sequence[str] | None = None,
        *,
        extra_columns: Sequence[str] = (),
        rows: tuple[int, int] | None = None,
        buffer_rows: int = 1_000_000,
        prefetch: int = 4,
        block_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        if buffer_rows < 1 or prefetch < 1:
            raise ValueError("buffer_rows and prefetch must be >= 1")
        self._blocks = RowBlocks(table, block_rows)
        self.task_names = tuple(schema.task_names if tasks is None else tasks)
        self._names = _layout(self._blocks.columns, schema, self.task_names)
        self._start, self._stop = (
            rows if rows is not None else (0, self._blocks.num_rows)
        )
        self._pieces = self._blocks.pieces(self._start, self._stop)
        self._extra_names = [
            c
            for c in dict.fromkeys([*schema.extras, *extra_columns])
            if c in self._blocks.columns
        ]
        self._extras: dict[str, np.ndarray] | None = None
        self.buffer_rows = buffer_rows
        self.prefetch = prefetch

    def __len__(self) -> int:
        return self._stop - self._start

    @property
    def extras(self) -> dict[str, np.ndarray]:
        """Passthrough columns, read once when first asked for."""
        if self._extras is None:
            self._extras = _column_arrays(self._blocks, self._pieces, self._extra_names)
        return self._extras

    def labels_dict(self) -> dict[str, np.ndarray]:
        """Label columns (read from disk) keyed by task name."""
        arrays = _column_arrays(self._blocks, self._pieces, self._names[2])
        return {t: arrays[t].astype(np.float32, copy=False) for t in self.task_names}

    def fingerprint(self) -> str:
        """Content hash of the rows this table reads."""
        return self._blocks.digest(self._start, self._stop)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches :meth:`batches` yields."""
        return batch_count(len(self), batch_size, drop_last)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> Iterator[Batch]:
        """Yield batches read ahead on a background thread.

        Args:
            batch_size: Rows per batch.
            shuffle: Shuffle the block order and the buffer with ``generator``.
            generator: Seeded CPU generator (used only by the reading thread,
                in a fixed order, so epochs are reproducible).
            drop_last: Skip a last batch smaller than ``batch_size``.
            device: Where batches are delivered (CUDA: pinned, non-blocking).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        target = torch.device(device) if device is not None else torch.device("cpu")
        pin = target.type == "cuda"
        host = self._host_batches(batch_size, shuffle, generator, drop_last, pin)
        for batch in _prefetched(host, self.prefetch):
            if target.type != "cpu":
                batch = Batch(*(t.to(target, non_blocking=pin) for t in batch))
            yield batch

    def _host_batches(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None,
        drop_last: bool,
        pin: bool,
    ) -> Iterator[Batch]:
        sparse_names, dense_names, label_names = self._names
        groups = [
            (sparse_names, np.int32),
            (dense_names, np.float32),
            (label_names, np.float32),
        ]
        columns = [*sparse_names, *dense_names, *label_names]
        order = list(range(len(self._pieces)))
        if shuffle and len(order) > 1:
            # one block: no draw, so a split read in one block is shuffled
            # exactly as in memory (the same generator calls)
            order = torch.randperm(len(order), generator=generator).tolist()
        pending: list[list[np.ndarray]] = []
        held = 0
        for position, k in enumerate(order):
            pending.append(
                _matrices(self._blocks.read(self._pieces[k], columns), groups)
            )
            held += pending[-1][0].shape[0]
            last = position == len(order) - 1
            if held < self.buffer_rows and not last:
                continue
            buffer = [np.concatenate([p[i] for p in pending]) for i in range(3)]
            if shuffle and held > 1:
                perm = torch.randperm(held, generator=generator).numpy()
                buffer = [np.take(a, perm, axis=0) for a in buffer]
            usable = held if last else held - held % batch_size
            if last and drop_last:
                usable = held - held % batch_size
            for start in range(0, usable, batch_size):
                # copies: a queued batch must not keep the whole buffer alive
                parts = [
                    torch.from_numpy(a[start : start + batch_size].copy())
                    for a in buffer
                ]
                if pin:
                    parts = [p.pin_memory() for p in parts]
                yield Batch(*parts)
            rest = held - usable
            pending = [[a[usable:] for a in buffer]] if rest and not last else []
            held = rest if not last else 0


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _prefetched(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run ``items`` on a background thread, ``depth`` results ahead.

    An exception in the thread is raised here; when the consumer stops
    early the thread is told to stop and joined.
    """
    out: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failure(exc))

    worker = threading.Thread(target=run, name="mtl_reco-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = out.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while True:
            try:
                out.get_nowait()
            except queue.Empty:
                break
        worker.join(timeout=10)


def available_memory_bytes() -> int | None:
    """Memory the system can still give (Linux ``MemAvailable``), if known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None
