"""Wiring of the pruning pipeline."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mtl_reco.pipelines.prune.nodes import prune_data


def create_pipeline(**kwargs: object) -> Pipeline:
    """One node: prune the data folder, write ``prune_report``."""
    return Pipeline(
        [
            Node(
                prune_data,
                inputs="params:runs",
                outputs="prune_report",
                name="prune_data",
                tags=["prune"],
            )
        ]
    )
