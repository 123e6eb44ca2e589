"""Project pipelines.

* ``data_processing``, ``compare``, ``score`` and ``prune`` are folders under
  ``mtl_reco.pipelines`` and are found by ``find_pipelines``;
* ``train_<experiment>`` for every experiment of the run's parameters (every
  top-level block with ``model`` and ``weighting``, see
  :mod:`mtl_reco.experiment`) = data processing + that experiment's
  train -> evaluate -> export template;
* ``__default__`` = data processing + every experiment that can train on the
  configured dataset + compare. An experiment whose model needs something the
  data lacks (ESMM needs a click -> conversion funnel; Census has none) is
  left out with one warning line; ``train_<experiment>`` for it still exists
  and fails before its first node with the reason.

``kedro run --pipelines=train_mmoe`` makes Kedro ask ``find_pipelines`` for a
folder called ``train_mmoe`` only; there is none (experiments come from the
parameters, not from folders), so the data-processing pipeline is imported
directly here, the experiment pipelines are always built from the
parameters, and the folder pipelines ``find_pipelines`` was not asked for
are imported too: every run sees every pipeline (the checks before the first
node read them all to know the parameter blocks).

The experiments and which of them apply depend on the run's parameters
(environment files merged with ``--params``: an experiment added to
``conf/local`` or by ``--params`` is a pipeline of that run):
:class:`mtl_reco.guard.RunGuardHook` records them when the session's context
is created, before Kedro first asks for the pipelines, and has the pipelines
rebuilt when they differ from the ones they were built from.
"""

from __future__ import annotations

import logging
import warnings

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from mtl_reco import preflight
from mtl_reco.experiment import configured_experiments
from mtl_reco.experiment.pipeline import create_experiment_pipeline
from mtl_reco.pipelines import data_processing

logger = logging.getLogger(__name__)


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines (see the module docstring)."""
    with warnings.catch_warnings():
        # Requested train_<experiment> names have no folder: expected, not an error.
        warnings.filterwarnings("ignore", message=r".*mtl_reco\.pipelines\.train_")
        pipelines = find_pipelines(raise_errors=False)
    data = data_processing.create_pipeline()
    pipelines["data_processing"] = data
    names = configured_experiments()
    experiments = {exp: create_experiment_pipeline(exp) for exp in names}
    for exp, pipe in experiments.items():
        pipelines[f"train_{exp}"] = data + pipe
    for name in ("compare", "prune", "score"):
        if name not in pipelines:
            module = __import__(f"mtl_reco.pipelines.{name}", fromlist=["_"])
            pipelines[name] = module.create_pipeline()
    applicable, left_out = preflight.applicable_experiments(
        names, preflight.active_parameters()
    )
    for exp, reason in left_out.items():
        logger.warning("__default__ leaves out experiment '%s': %s", exp, reason)
    pipelines["__default__"] = (
        data
        + sum((experiments[e] for e in applicable), Pipeline([]))
        + pipelines["compare"]
    )
    return pipelines
