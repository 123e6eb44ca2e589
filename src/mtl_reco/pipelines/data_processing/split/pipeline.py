"""Split stage wiring."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline, node

from mtl_reco.pipelines.data_processing.split.nodes import report_split, split_events


def create_pipeline(**kwargs: Any) -> Pipeline:
    """``labelled_events`` -> ``{train,valid,test}_events`` + ``split_report``."""
    return Pipeline(
        [
            node(
                split_events,
                inputs=["labelled_events", "task_spec", "params:split"],
                outputs=["train_events", "valid_events", "test_events", "split_plan"],
                name="split_events",
            ),
            node(
                report_split,
                inputs=[
                    "train_events",
                    "valid_events",
                    "test_events",
                    "task_spec",
                    "split_plan",
                ],
                outputs="split_report",
                name="report_split",
            ),
        ],
        tags="split",
    )
