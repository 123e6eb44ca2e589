"""Ingestion nodes: read the selected source into raw events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtl_reco.processing.ingestion import open_source, source_options
from mtl_reco.tables import Table

FILES_SUFFIX = "_files"
"""A source's input files are the catalog entry ``<source>_files``."""


def ingest_source(
    dataset: str, sources: Mapping[str, Any] | None, **files: Mapping[str, Any]
) -> tuple[Table, dict[str, Any]]:
    """Open the source named by the ``dataset`` parameter.

    Args:
        dataset: Source name (``simulated``, ``census_income``, ...).
        sources: The ``sources`` parameter block, raw (``read_source``
            validates the selected block strictly); the block of ``dataset``
            is used.
        **files: Every ``<source>_files`` catalog entry as loaded (file
            option -> location, nothing opened); only ``<dataset>_files`` is
            used, merged into the block.

    Returns:
        The raw events as a lazy table (streamed into parquet by the
        catalog) and the ``raw_schema`` record (schema, options, input files).
    """
    options = source_options(dataset, sources, files.get(f"{dataset}{FILES_SUFFIX}"))
    _, table, record = open_source(dataset, options)
    return table, record
