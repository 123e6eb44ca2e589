"""Encoding stage wiring."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline, node

from mtl_reco.pipelines.data_processing.encoding.nodes import (
    apply_encoder,
    build_feature_schema,
    fit_encoder,
    report_encoding,
)

SPLITS = ("train", "valid", "test")


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Fit on ``train_events``; encode every split; write the feature schema."""
    nodes = [
        node(
            fit_encoder,
            inputs=["train_events", "task_spec", "params:encoding"],
            outputs="feature_encoder",
            name="fit_encoder",
        ),
        *(
            node(
                apply_encoder,
                inputs=[f"{split}_events", "feature_encoder"],
                outputs=f"encoded_{split}",
                name=f"encode_{split}",
            )
            for split in SPLITS
        ),
        node(
            build_feature_schema,
            inputs=["feature_encoder", "task_spec"],
            outputs="feature_schema",
            name="build_feature_schema",
        ),
        node(
            report_encoding,
            inputs=[
                "feature_encoder",
                *(f"{split}_events" for split in SPLITS),
                *(f"encoded_{split}" for split in SPLITS),
            ],
            outputs="encoding_report",
            name="report_encoding",
        ),
    ]
    return Pipeline(nodes, tags="encoding")
