"""Ingestion stage wiring."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline, node

from mtl_reco.pipelines.data_processing.ingestion.nodes import (
    FILES_SUFFIX,
    ingest_source,
)

FILE_SOURCES = ("census_income", "ali_ccp", "ali_ccp_raw", "aliexpress")
"""Sources that read files: each has a ``<source>_files`` catalog entry (raw)."""


def create_pipeline(**kwargs: Any) -> Pipeline:
    """``dataset``, ``sources``, ``<source>_files`` -> raw events and schema."""
    files = {f"{s}{FILES_SUFFIX}": f"{s}{FILES_SUFFIX}" for s in FILE_SOURCES}
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
