"""Ingestion helpers: open the chosen source and describe what was read."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtl_reco.sources.base import RawSchema
from mtl_reco.sources.registry import read_source
from mtl_reco.tables import Table
from mtl_reco.typed_config import StrictConfig

logger = logging.getLogger(__name__)


def input_files(options: StrictConfig | None) -> list[str]:
    """Every option value (nested ones too) that names an existing file."""
    if options is None:
        return []

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            if value and Path(value).is_file():
                yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                yield from walk(item)

    return list(dict.fromkeys(walk(options.to_dict())))


def open_source(
    dataset: str, options: StrictConfig | None
) -> tuple[RawSchema, Table, dict[str, Any]]:
    """Open source ``dataset`` lazily.

    Returns:
        The raw schema, the lazy table and the ``raw_schema`` artefact: the
        schema's dictionary plus ``dataset``, ``options``, ``inputs`` (the
        files read, quoted by validation messages) and ``input_splits``
        (split -> the file whose rows carry that split value, for sources
        that read one file per split; ``{}`` otherwise).
    """
    schema, table = read_source(dataset, options)
    files = getattr(table, "files", ())
    record = {
        **schema.to_dict(),
        "dataset": dataset,
        "options": options.to_dict() if options is not None else None,
        "inputs": input_files(options),
        "input_splits": {
            split: str(path) for split, path in files if split is not None
        },
    }
    logger.info(
        "ingesting source '%s' (%s)",
        dataset,
        ", ".join(record["inputs"]) or "generated, no input file",
    )
    return schema, table, record
