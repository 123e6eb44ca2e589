"""AliExpress search log in the processed CSV format (torch-rechub style).

Columns: ``search_id`` (kept as an int64 extra, never a feature),
``categorical_1..16`` (int64 sparse ids), ``numerical_1..63`` (float dense),
``click`` and ``conversion`` (a click -> conversion funnel). Give ``path``
(no split column) or any of ``train``/``valid``/``test``; with two or more,
rows carry a ``split`` column naming their file. Default tasks:
``ctr = click`` and ``ctcvr = click * conversion``.
"""

from __future__ import annotations

from mtl_reco.sources._common import SourceTable
from mtl_reco.sources._processed import ProcessedFormat, read_processed
from mtl_reco.sources.base import RawSchema, TaskDefinition
from mtl_reco.typed_config import StrictConfig

SOURCE_NAME = "aliexpress"
SPARSE = tuple(f"categorical_{i}" for i in range(1, 17))
DENSE = tuple(f"numerical_{i}" for i in range(1, 64))

FORMAT = ProcessedFormat(
    source=SOURCE_NAME,
    labels=("click", "conversion"),
    sparse=SPARSE,
    dense=DENSE,
    extras=("search_id",),
    funnel=("click", "conversion"),
    default_tasks=(
        TaskDefinition("ctr", "click"),
        TaskDefinition("ctcvr", "click * conversion"),
    ),
)


class AliExpressOptions(StrictConfig):
    """Options of the ``aliexpress`` source.

    Attributes:
        path: One processed CSV; no split column.
        train: Train CSV.
        valid: Optional validation CSV.
        test: Test CSV. Give ``path`` or any of the three.
    """

    path: str | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None


def read_aliexpress(options: AliExpressOptions) -> tuple[RawSchema, SourceTable]:
    """Check the files and return the schema with a lazy chunked table."""
    return read_processed(
        FORMAT,
        options.path,
        {"train": options.train, "valid": options.valid, "test": options.test},
    )
