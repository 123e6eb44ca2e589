"""Validation stage wiring: report first (always saved), then the gate."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline, node

from mtl_reco.pipelines.data_processing.validation.nodes import (
    check_validation,
    validate_raw_events,
)


def create_pipeline(**kwargs: Any) -> Pipeline:
    """``raw_events`` -> report + summary -> ``validation_status``."""
    return Pipeline(
        [
            node(
                validate_raw_events,
                inputs=["raw_events", "raw_schema", "params:validation"],
                outputs=["validation_report", "validation_summary"],
                name="validate_raw_events",
            ),
            node(
                check_validation,
                inputs="validation_report",
                outputs="validation_status",
                name="check_validation",
            ),
        ],
        tags="validation",
    )
