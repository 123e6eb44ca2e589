"""Wiring of the comparison pipeline."""

from __future__ import annotations

import warnings

from kedro.pipeline import Node, Pipeline

from mtl_reco.experiment import configured_experiments
from mtl_reco.pipelines.compare.nodes import compare_experiments


def create_pipeline(**kwargs: object) -> Pipeline:
    """One node over the test metrics of every experiment of the parameters.

    Its inputs are the namespaced ``<experiment>.test_metrics`` artefacts, so
    in ``__default__`` it runs after every experiment's evaluation, and the
    ``dataset`` parameter (only experiments trained on it are compared).
    """
    with warnings.catch_warnings():
        # Reading other namespaces' outputs is the point of this node.
        warnings.filterwarnings("ignore", message="One or more dataset names contain")
        node = Node(
            compare_experiments,
            inputs={
                "dataset": "params:dataset",
                **{exp: f"{exp}.test_metrics" for exp in configured_experiments()},
            },
            outputs=["model_comparison", "model_comparison_chart"],
            name="compare_experiments",
            tags=["compare"],
        )
    return Pipeline([node])
