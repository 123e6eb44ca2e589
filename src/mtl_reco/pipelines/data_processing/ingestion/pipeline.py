"""Ingestion stage wiring."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline, node

from mtl_reco.pipelines.data_processing.ingestion.nodes import (
    FILES_SUFFIX,
    ingest_source,
)
from mtl_reco.sources.registry import file_sources


def create_pipeline(**kwargs: Any) -> Pipeline:
    """``dataset``, ``sources``, ``<source>_files`` -> raw events and schema.

    Every registered source that reads files (a processed-CSV format or a
    reader module) has its ``<source>_files`` catalog entry as an input.
    """
    files = {f"{s}{FILES_SUFFIX}": f"{s}{FILES_SUFFIX}" for s in file_sources()}
    return Pipeline(
        [
            node(
                ingest_source,
                inputs={
                    "dataset": "params:dataset",
                    "sources": "params:sources",
                    **files,
                },
                outputs=["raw_events", "raw_schema"],
                name="ingest_source",
            )
        ],
        tags="ingestion",
    )
