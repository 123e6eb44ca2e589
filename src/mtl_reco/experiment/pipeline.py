"""The experiment template and its per-experiment instances.

One template with three nodes (train -> evaluate -> export). Instantiated per
experiment with a Kedro namespace, so experiment ``mmoe`` reads the
parameters ``mmoe.model`` / ``mmoe.weighting`` and writes ``mmoe.model_state``,
``mmoe.test_metrics``, ``mmoe.onnx_model``… (catalog dataset factories), while
the data-processing outputs and the shared ``trainer``/``evaluation``/
``export`` parameter blocks are the same for every experiment.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kedro.pipeline import Node, Pipeline

from mtl_reco.experiment import TRAIN_TAG
from mtl_reco.experiment.nodes import evaluate_experiment, export_model, train_model

# Inputs every experiment shares (not namespaced).
SHARED_INPUTS = {"encoded_train", "encoded_valid", "encoded_test", "feature_schema"}
SHARED_PARAMETERS = {
    "params:trainer",
    "params:evaluation",
    "params:export",
    "params:dataset",
}

EVALUATE_TAG = "evaluation"
EXPORT_TAG = "export"


def _train_node_func(experiment: str) -> Callable[..., Any]:
    """``train_model`` with the experiment's name bound.

    The name keys the checkpoint folder. The wrapper keeps ``train_model``'s
    signature and source for Kedro and kedro-viz.
    """

    @functools.wraps(train_model)
    def train(*args: Any, **kwargs: Any) -> Any:
        return train_model(*args, experiment=experiment, **kwargs)

    return train


def template(experiment: str | None = None) -> Pipeline:
    """The bare three-node template (not runnable before namespacing).

    Args:
        experiment: The experiment it will be namespaced as (names the
            training checkpoint folder).
    """
    return Pipeline(
        [
            Node(
                train_model if experiment is None else _train_node_func(experiment),
                inputs=[
                    "encoded_train",
                    "encoded_valid",
                    "feature_schema",
                    "params:model",
                    "params:weighting",
                    "params:trainer",
                ],
                outputs=["model_state", "model_spec", "training_history"],
                name="train",
                tags=[TRAIN_TAG],
            ),
            Node(
                evaluate_experiment,
                inputs=[
                    "model_state",
                    "model_spec",
                    "encoded_valid",
                    "encoded_test",
                    "training_history",
                    "params:trainer",
                    "params:evaluation",
                    "params:dataset",
                ],
                outputs=["test_metrics", "test_predictions", "plots"],
                name="evaluate",
                tags=[EVALUATE_TAG],
            ),
            Node(
                export_model,
                inputs=["model_state", "model_spec", "encoded_test", "params:export"],
                outputs=["onnx_model", "onnx_parity"],
                name="export_onnx",
                tags=[EXPORT_TAG],
            ),
        ]
    )


def create_experiment_pipeline(experiment: str) -> Pipeline:
    """Training, evaluation and export for one experiment (its namespace)."""
    return Pipeline(
        template(experiment),
        namespace=experiment,
        inputs=SHARED_INPUTS,
        parameters=SHARED_PARAMETERS,
        tags=[experiment],
    )
