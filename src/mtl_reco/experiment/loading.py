"""Encoded splits for the trainer: in memory or streamed, whole or one shard.

Kept apart from :mod:`mtl_reco.experiment.nodes` so that scripts which only
need data in tensors (the benchmarks, the GPU check) import neither the
reporting charts nor matplotlib.

``trainer.data`` picks how a split reaches the model: ``memory`` loads it
into contiguous tensors (:func:`load_tensor_table`), ``stream`` reads it
from parquet batch by batch
(:class:`~mtl_reco.experiment.streaming.StreamingTable`), ``auto`` picks
memory when every split the run reads fits in a quarter of the available
memory (:func:`resolve_data_mode`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from mtl_reco.experiment.streaming import (
    StreamingTable,
    available_memory_bytes,
    load_rows,
)
from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.data import BatchSource, TensorTable
from mtl_reco.schema import FeatureSchema
from mtl_reco.tables import Table, as_table, count_rows

__all__ = [
    "MEMORY_SHARE",
    "load_split",
    "load_tensor_table",
    "resolve_data_mode",
]

logger = logging.getLogger(__name__)

MEMORY_SHARE = 0.25
"""``auto`` loads the splits into memory when they take at most this share
of the available memory (room for the model, the optimizer, the metrics and
other processes)."""


def load_tensor_table(
    table: Table | pd.DataFrame,
    schema: FeatureSchema,
    tasks: list[str] | None = None,
    extra_columns: tuple[str, ...] = (),
    rows: tuple[int, int] | None = None,
) -> TensorTable:
    """Read an encoded split into contiguous tensors (only the needed columns).

    Args:
        table: Encoded split (lazy parquet table or DataFrame).
        schema: Feature schema of the encoded data.
        tasks: Label columns to load (default: every schema task).
        extra_columns: More columns to keep as extras (e.g. a GAUC group key).
        rows: Only rows ``[start, stop)`` (a rank's shard).
    """
    if isinstance(table, pd.DataFrame) and rows is None:
        task_names = list(schema.task_names if tasks is None else tasks)
        wanted = schema.sparse_names + schema.dense_names + task_names
        extras = [c for c in (*schema.extras, *extra_columns) if c in table.columns]
        frame = table[list(dict.fromkeys(wanted + extras))]
        tensor_table = TensorTable.from_frame(frame, schema, task_names)
        for col in extra_columns:
            if col in frame.columns:
                tensor_table.extras[col] = frame[col].to_numpy()
        return tensor_table
    return load_rows(table, schema, tasks, extra_columns, rows)


def bytes_per_row(schema: FeatureSchema, n_tasks: int) -> int:
    """Memory of one encoded row held as tensors (int32 ids, float32 values)."""
    return 4 * (len(schema.sparse_names) + len(schema.dense_names) + n_tasks)


def resolve_data_mode(
    mode: str, tables: Sequence[Table | pd.DataFrame], schema: FeatureSchema
) -> str:
    """``memory`` or ``stream`` for ``trainer.data`` (``auto`` decided here).

    ``auto`` is ``memory`` when the splits, held as tensors, take at most
    :data:`MEMORY_SHARE` of the available memory, and ``stream`` otherwise
    (also when the available memory is unknown and the splits are over 1 GB).
    """
    if mode != "auto":
        return mode
    rows = sum(count_rows(as_table(t)) for t in tables)
    need = rows * bytes_per_row(schema, len(schema.task_names))
    available = available_memory_bytes()
    limit = MEMORY_SHARE * available if available is not None else 1 << 30
    chosen = "memory" if need <= limit else "stream"
    logger.info(
        "trainer.data=auto: %s (%d rows, %.2f GB as tensors; limit %.2f GB)",
        chosen,
        rows,
        need / 1e9,
        limit / 1e9,
    )
    return chosen


def load_split(
    table: Table | pd.DataFrame,
    schema: FeatureSchema,
    tasks: list[str],
    config: TrainerConfig,
    mode: str,
    *,
    extra_columns: tuple[str, ...] = (),
    rows: tuple[int, int] | None = None,
) -> BatchSource:
    """A split the way ``mode`` says: tensors in memory or a stream from disk."""
    if mode == "memory":
        return load_tensor_table(table, schema, tasks, extra_columns, rows)
    return StreamingTable(
        table,
        schema,
        tasks,
        extra_columns=extra_columns,
        rows=rows,
        buffer_rows=config.stream_buffer_rows,
        prefetch=config.prefetch_batches,
    )
