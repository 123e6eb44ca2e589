"""Label stage wiring."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline, node

from mtl_reco.pipelines.data_processing.labels.nodes import engineer_labels


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Validated ``raw_events`` -> ``labelled_events``, ``task_spec``, report."""
    return Pipeline(
        [
            node(
                engineer_labels,
                inputs=[
                    "raw_events",
                    "raw_schema",
                    "validation_status",
                    "params:labels",
                ],
                outputs=["labelled_events", "task_spec", "label_report"],
                name="engineer_labels",
            )
        ],
        tags="labels",
    )
