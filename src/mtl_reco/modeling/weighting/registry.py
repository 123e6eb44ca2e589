"""Loss-weighting registry: strategy name -> class."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from mtl_reco.modeling.config import ConfigError, WeightingConfig
from mtl_reco.modeling.weighting.base import LossWeighting

_STRATEGIES: dict[str, str] = {
    "fixed": "mtl_reco.modeling.weighting.fixed:FixedWeights",
    "uwl": "mtl_reco.modeling.weighting.uwl:UncertaintyWeighting",
    "gradnorm": "mtl_reco.modeling.weighting.gradnorm:GradNorm",
    "metabalance": "mtl_reco.modeling.weighting.metabalance:MetaBalance",
    "dwa": "mtl_reco.modeling.weighting.dwa:DynamicWeightAverage",
    "pcgrad": "mtl_reco.modeling.weighting.pcgrad:PCGrad",
}


def available_strategies() -> list[str]:
    """Names accepted by :func:`get_strategy_class`."""
    return sorted(_STRATEGIES)


def get_strategy_class(name: str) -> type[LossWeighting]:
    """Return the strategy registered as ``name``; unknown names raise ConfigError."""
    target = _STRATEGIES.get(name)
    if target is None:
        raise ConfigError(
            f"unknown loss weighting {name!r}; choose one of "
            f"{', '.join(available_strategies())}"
        )
    module_name, _, attr = target.partition(":")
    cls: type[LossWeighting] = getattr(importlib.import_module(module_name), attr)
    return cls


def build_strategy(
    name: str,
    task_names: Sequence[str],
    config: WeightingConfig | Mapping[str, Any] | None = None,
) -> LossWeighting:
    """Build the strategy ``name`` for the given loss heads."""
    cls = get_strategy_class(name)
    typed = (
        config
        if isinstance(config, WeightingConfig)
        else cls.config_cls.from_dict(config)
    )
    return cls(task_names, typed)
