"""Project pipelines.

* ``data_processing``, ``compare`` and ``score`` are folders under
  ``mtl_reco.pipelines`` and are found by ``find_pipelines``;
* ``train_<experiment>`` (one per entry of
  :data:`mtl_reco.experiment.EXPERIMENTS`) = data processing + that
  experiment's train -> evaluate -> export template;
* ``__default__`` = data processing + every experiment + compare.

``kedro run --pipeline=train_mmoe`` makes Kedro ask ``find_pipelines`` for a
folder called ``train_mmoe`` only; there is none (experiments come from a
list, not from folders), so the data-processing pipeline is imported
directly here and the experiment pipelines are always built from the list.
"""

from __future__ import annotations

import warnings

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from mtl_reco.experiment import EXPERIMENTS
from mtl_reco.experiment.pipeline import create_experiment_pipeline
from mtl_reco.pipelines import data_processing


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines (see the module docstring)."""
    with warnings.catch_warnings():
        # Requested train_<experiment> names have no folder: expected, not an error.
        warnings.filterwarnings("ignore", message=r".*mtl_reco\.pipelines\.train_")
        pipelines = find_pipelines(raise_errors=False)
    data = data_processing.create_pipeline()
    pipelines["data_processing"] = data
    experiments = {exp: create_experiment_pipeline(exp) for exp in EXPERIMENTS}
    for exp, pipe in experiments.items():
        pipelines[f"train_{exp}"] = data + pipe
    if "compare" not in pipelines:
        from mtl_reco.pipelines import compare

        pipelines["compare"] = compare.create_pipeline()
    pipelines["__default__"] = (
        data + sum(experiments.values(), Pipeline([])) + pipelines["compare"]
    )
    return pipelines
