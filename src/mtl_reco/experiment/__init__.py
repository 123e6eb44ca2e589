"""Per-experiment training, evaluation and export, written once.

An *experiment* is a named parameter block (``mmoe``, ``esmm``, ``mmoe_uwl``…)
that picks ``model.name`` and ``weighting.name``; it is not the same as a
model name. The parameters are the one list of experiments: **every top-level
parameter block with both a ``model`` and a ``weighting`` key is an
experiment** (:func:`experiment_names`), in the order the configuration
gives them, and gets a ``train_<experiment>`` pipeline. To add one, add a
block to ``conf/base/parameters_training.yml`` (or to the parameters of
another environment, e.g. ``conf/local``)::

    mmoe_gradnorm:
      model: {name: mmoe, params: {n_experts: 8}}
      weighting: {name: gradnorm, params: {alpha: 1.5}}

Experiment blocks stay top-level, so ``--params mmoe.model.params.n_experts=4``
addresses them as before and the template reads them as namespaced
parameters (``params:mmoe.model``).

The template lives outside ``mtl_reco.pipelines`` on purpose: Kedro's
``find_pipelines`` registers every folder there, and the bare (un-namespaced)
template must not be runnable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EXPERIMENT_KEYS = ("model", "weighting")
"""A top-level parameter block with both keys is an experiment."""

TRAIN_TAG = "training"
"""Tag of every experiment's training node."""


def is_experiment_block(value: Any) -> bool:
    """Whether a top-level parameter value is an experiment block."""
    return isinstance(value, Mapping) and all(k in value for k in EXPERIMENT_KEYS)


def experiment_names(params: Mapping[str, Any] | None) -> list[str]:
    """The experiments of ``params``: blocks with model and weighting, in order."""
    blocks = params or {}
    return [name for name, block in blocks.items() if is_experiment_block(block)]


def configured_experiments() -> list[str]:
    """The experiments of the current session, else of the project's configuration.

    Inside a session the run guard has recorded the run's parameters (every
    file of the run's environment, merged with ``--params``) before Kedro
    first asks for the pipelines. Outside one (``kedro registry list``, a
    notebook that imports the registry) the project's default environments
    (``base`` + ``local``) are read from the Kedro project around the
    current directory.
    """
    from mtl_reco import preflight

    params = preflight.active_parameters()
    if params is None:
        params = project_parameters()
    return experiment_names(params)


def project_parameters(project_path: Path | None = None) -> dict[str, Any]:
    """The parameters of the project's default environments, outside a session.

    Args:
        project_path: The Kedro project (default: the one around the current
            directory).

    Returns:
        The merged parameters, or ``{}`` when no project is found or its
        configuration cannot be read (a session reports the cause).
    """
    from kedro.framework.project import settings
    from kedro.utils import find_kedro_project

    root = project_path or find_kedro_project(Path.cwd())
    if root is None:
        return {}
    try:
        loader = settings.CONFIG_LOADER_CLASS(
            conf_source=str(Path(root) / settings.CONF_SOURCE),
            **settings.CONFIG_LOADER_ARGS,
        )
        return dict(loader["parameters"])
    except Exception as exc:  # a session reports the broken configuration
        logger.debug("cannot read the parameters of %s: %s", root, exc)
        return {}


def trained_experiments(nodes: Iterable[Any]) -> list[str]:
    """The experiments (namespaces) whose training node is among ``nodes``, in order."""
    return list(
        dict.fromkeys(n.namespace for n in nodes if TRAIN_TAG in n.tags and n.namespace)
    )
