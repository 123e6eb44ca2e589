"""Ingestion stage wiring."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline, node

from mtl_reco.pipelines.data_processing.ingestion.nodes import ingest_source


def create_pipeline(**kwargs: Any) -> Pipeline:
    """``dataset`` + ``sources`` -> ``raw_events``, ``raw_schema``."""
    return Pipeline(
        [
            node(
                ingest_source,
                inputs=["params:dataset", "params:sources"],
                outputs=["raw_events", "raw_schema"],
                name="ingest_source",
            )
        ],
        tags="ingestion",
    )
