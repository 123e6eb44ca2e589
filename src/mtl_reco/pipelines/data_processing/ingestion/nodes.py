"""Ingestion nodes: read the selected source into raw events."""

from __future__ import annotations

from typing import Any

from mtl_reco.processing.config import SourcesConfig
from mtl_reco.processing.ingestion import open_source
from mtl_reco.tables import Table


def ingest_source(dataset: str, sources: SourcesConfig) -> tuple[Table, dict[str, Any]]:
    """Open the source named by the ``dataset`` parameter.

    Args:
        dataset: Source name (``simulated``, ``census_income``, ...).
        sources: Per-source options; the block of ``dataset`` is used.

    Returns:
        The raw events as a lazy table (streamed into parquet by the
        catalog) and the ``raw_schema`` record (schema, options, input files).
    """
    _, table, record = open_source(dataset, sources.for_source(dataset))
    return table, record
