"""Ali-CCP in the processed 33-column CSV format (torch-rechub style).

Columns: ``click, purchase``, the 23 sparse fields of :data:`SPARSE` (int64
ids, ``0`` = missing/rare in that preprocessing) and the 8 dense fields of
:data:`DENSE` (float). Give one file with ``path`` (no split column) or any
of ``train``/``valid``/``test``; with two or more, rows carry a ``split``
column naming their file. Labels form the click -> purchase funnel; default
tasks are ``ctr = click`` and ``ctcvr = click * purchase``. See
:mod:`mtl_reco.sources._processed` for dtypes and missing-column handling.
"""

from __future__ import annotations

from mtl_reco.sources._common import SourceTable
from mtl_reco.sources._processed import ProcessedFormat, read_processed
from mtl_reco.sources.base import RawSchema, TaskDefinition
from mtl_reco.typed_config import StrictConfig

SOURCE_NAME = "ali_ccp"
LABELS = ("click", "purchase")
SPARSE = (
    "101",
    "121",
    "122",
    "124",
    "125",
    "126",
    "127",
    "128",
    "129",
    "205",
    "206",
    "207",
    "210",
    "216",
    "508",
    "509",
    "702",
    "853",
    "301",
    "109_14",
    "110_14",
    "127_14",
    "150_14",
)
"""The 23 sparse fields, in the processed files' column order."""
DENSE = (
    "D109_14",
    "D110_14",
    "D127_14",
    "D150_14",
    "D508",
    "D509",
    "D702",
    "D853",
)
"""The 8 dense fields (``D<field>`` = value attached to that field)."""
DEFAULT_TASKS = (
    TaskDefinition("ctr", "click"),
    TaskDefinition("ctcvr", "click * purchase"),
)

FORMAT = ProcessedFormat(
    source=SOURCE_NAME,
    labels=LABELS,
    sparse=SPARSE,
    dense=DENSE,
    funnel=("click", "purchase"),
    default_tasks=DEFAULT_TASKS,
)


class AliCcpOptions(StrictConfig):
    """Options of the ``ali_ccp`` source.

    Attributes:
        path: One processed CSV; no split column.
        train: Processed train CSV.
        valid: Processed validation CSV.
        test: Processed test CSV. Give ``path`` or any of the three.
    """

    path: str | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None


def read_ali_ccp(options: AliCcpOptions) -> tuple[RawSchema, SourceTable]:
    """Check the files and return the schema with a lazy chunked table."""
    return read_processed(
        FORMAT,
        options.path,
        {"train": options.train, "valid": options.valid, "test": options.test},
    )
