"""Per-experiment training, evaluation and export, written once.

An *experiment* is a named parameter block (``mmoe``, ``esmm``, ``mmoe_uwl``…)
that picks ``model.name`` and ``weighting.name``; it is not the same as a
model name. :data:`EXPERIMENTS` lists the experiments that get a
``train_<experiment>`` pipeline. To add one, append its name here and add a
block with the same name to ``conf/base/parameters_training.yml``::

    mmoe_gradnorm:
      model: {name: mmoe, params: {n_experts: 8}}
      weighting: {name: gradnorm, params: {alpha: 1.5}}

The template lives outside ``mtl_reco.pipelines`` on purpose: Kedro's
``find_pipelines`` registers every folder there, and the bare (un-namespaced)
template must not be runnable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EXPERIMENTS: tuple[str, ...] = ("shared_bottom", "esmm", "mmoe", "ple", "aitm")

TRAIN_TAG = "training"
"""Tag of every experiment's training node."""


def trained_experiments(nodes: Iterable[Any]) -> list[str]:
    """The experiments (namespaces) whose training node is among ``nodes``, in order."""
    return list(
        dict.fromkeys(n.namespace for n in nodes if TRAIN_TAG in n.tags and n.namespace)
    )
