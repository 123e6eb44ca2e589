"""Encoded splits into tensors: the one step from a table to the trainer.

Kept apart from :mod:`mtl_reco.experiment.nodes` so that scripts which only
need data in tensors (the benchmarks, the GPU check) import neither the
reporting charts nor matplotlib.
"""

from __future__ import annotations

import pandas as pd

from mtl_reco.modeling.data import TensorTable
from mtl_reco.schema import FeatureSchema
from mtl_reco.tables import Table

__all__ = ["load_tensor_table"]


def load_tensor_table(
    table: Table | pd.DataFrame,
    schema: FeatureSchema,
    tasks: list[str] | None = None,
    extra_columns: tuple[str, ...] = (),
) -> TensorTable:
    """Read an encoded split into contiguous tensors (only the needed columns).

    Args:
        table: Encoded split (lazy parquet table or DataFrame).
        schema: Feature schema of the encoded data.
        tasks: Label columns to load (default: every schema task).
        extra_columns: More columns to keep as extras (e.g. a GAUC group key).
    """
    task_names = list(schema.task_names if tasks is None else tasks)
    present = set(table.columns) if hasattr(table, "columns") else set()
    wanted = schema.sparse_names + schema.dense_names + task_names
    extras = [c for c in (*schema.extras, *extra_columns) if c in present]
    columns = list(dict.fromkeys(wanted + extras))
    frame = (
        table[columns] if isinstance(table, pd.DataFrame) else table.to_pandas(columns)
    )
    tensor_table = TensorTable.from_frame(frame, schema, task_names)
    for col in extra_columns:
        if col in frame.columns:
            tensor_table.extras[col] = frame[col].to_numpy()
    return tensor_table
