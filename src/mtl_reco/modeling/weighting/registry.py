"""Loss-weighting registry: strategy name -> class, and the strategy spec.

Adding a strategy is its module plus one line in :data:`STRATEGIES` (or a
call to :func:`register_strategy` from outside the package).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

from pydantic import Field, model_validator

from mtl_reco.modeling.config import ConfigError, StrictConfig, WeightingConfig
from mtl_reco.modeling.weighting.base import LossWeighting
from mtl_reco.modeling.weighting.dwa import DynamicWeightAverage
from mtl_reco.modeling.weighting.fixed import FixedWeights
from mtl_reco.modeling.weighting.gradnorm import GradNorm
from mtl_reco.modeling.weighting.metabalance import MetaBalance
from mtl_reco.modeling.weighting.pcgrad import PCGrad
from mtl_reco.modeling.weighting.uwl import UncertaintyWeighting

__all__ = [
    "STRATEGIES",
    "WeightingSpec",
    "available_strategies",
    "build_strategy",
    "get_strategy_class",
    "register_strategy",
]

STRATEGIES: dict[str, type[LossWeighting]] = {
    "fixed": FixedWeights,
    "uwl": UncertaintyWeighting,
    "gradnorm": GradNorm,
    "metabalance": MetaBalance,
    "dwa": DynamicWeightAverage,
    "pcgrad": PCGrad,
}
"""Every loss-weighting strategy by name (the class's ``name``)."""


def register_strategy(cls: type[LossWeighting]) -> type[LossWeighting]:
    """Add ``cls`` to :data:`STRATEGIES` under ``cls.name`` (usable as a decorator).

    Raises:
        ValueError: ``cls.name`` is empty or already taken by another class.
    """
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if STRATEGIES.get(cls.name, cls) is not cls:
        raise ValueError(f"loss weighting {cls.name!r} is already registered")
    STRATEGIES[cls.name] = cls
    return cls


def available_strategies() -> list[str]:
    """Names accepted by :func:`get_strategy_class`, sorted."""
    return sorted(STRATEGIES)


def get_strategy_class(name: str) -> type[LossWeighting]:
    """Return the strategy registered as ``name``; unknown names raise ConfigError."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown loss weighting {name!r}; choose one of "
            f"{', '.join(available_strategies())}"
        ) from None


def build_strategy(
    name: str,
    task_names: Sequence[str],
    config: WeightingConfig | Mapping[str, Any] | None = None,
) -> LossWeighting:
    """Build the strategy ``name`` for the given loss heads.

    Example::

        strategy = build_strategy("uwl", model.task_names)
    """
    cls = get_strategy_class(name)
    typed = (
        config
        if isinstance(config, WeightingConfig)
        else cls.config_cls.from_dict(config)
    )
    return cls(task_names, typed)


class WeightingSpec(StrictConfig):
    """Which loss-weighting strategy to use and its hyperparameters.

    Example::

        WeightingSpec(name="gradnorm", params={"alpha": 1.5})
    """

    name: str = "fixed"
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_params(self) -> Self:
        """Resolve the strategy name and type-check its parameters."""
        self.build_config()
        return self

    def build_config(self) -> WeightingConfig:
        """Return the strategy's typed config (raises ConfigError when invalid)."""
        cls = get_strategy_class(self.name)
        try:
            return cls.config_cls.from_dict(self.params)
        except ConfigError as exc:
            raise ConfigError(f"weighting {self.name!r}: {exc}") from None
