"""Fixed per-task loss weights (the classic weighted sum)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

import torch
from pydantic import Field

from mtl_reco.modeling.config import ConfigError, WeightingConfig
from mtl_reco.modeling.weighting._common import ordered_losses, weighted_total
from mtl_reco.modeling.weighting.base import LossWeighting


class FixedWeightsConfig(WeightingConfig):
    """Hyperparameters of :class:`FixedWeights`.

    Attributes:
        weights: Weight per task name; tasks not listed get 1.0. A name that
            is not one of the model's loss heads is an error.
    """

    weights: dict[str, Annotated[float, Field(ge=0.0)]] = Field(default_factory=dict)


class FixedWeights(LossWeighting):
    """Constant weights: the objective is ``sum_i w_i L_i + aux``.

    The standard multi-task objective (e.g. Caruana, "Multitask Learning",
    1997); with the default weights it is the plain sum of the task losses.
    One backward pass per step.

    Args:
        task_names: Names of the loss heads, in order.
        config: :class:`FixedWeightsConfig`.

    Raises:
        ConfigError: ``config.weights`` names a task the model does not have.

    Example::

        from mtl_reco.modeling.weighting.fixed import FixedWeightsConfig
        config = FixedWeightsConfig(weights={"ctcvr": 2.0})  # unlisted tasks get 1.0
        strategy = FixedWeights(["ctr", "ctcvr"], config)
        theta = torch.ones(2, requires_grad=True)  # stands in for model parameters
        losses = {"ctr": 3 * theta[0], "ctcvr": 5 * theta[1]}
        strategy.backward(losses)  # {'ctr': 1.0, 'ctcvr': 2.0}
        theta.grad.tolist()  # [3.0, 10.0]
    """

    name = "fixed"
    config_cls = FixedWeightsConfig
    config: FixedWeightsConfig
    weights: torch.Tensor

    def __init__(
        self, task_names: Sequence[str], config: FixedWeightsConfig | None = None
    ) -> None:
        super().__init__(task_names, config)
        unknown = sorted(set(self.config.weights) - set(self.task_names))
        if unknown:
            raise ConfigError(
                f"fixed weights given for unknown task(s) {unknown}; the loss heads "
                f"are {list(self.task_names)}"
            )
        values = [float(self.config.weights.get(n, 1.0)) for n in self.task_names]
        self.register_buffer("weights", torch.tensor(values, dtype=torch.float32))

    def weighted_backward(
        self, losses: Mapping[str, torch.Tensor], aux_loss: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Backpropagate ``sum_i w_i L_i + aux``; return ``w``."""
        ordered = ordered_losses(self.task_names, losses)
        torch.autograd.backward(weighted_total(ordered, self.weights, aux_loss))
        return self.weights.detach().clone()

    def current_weights(self) -> dict[str, float]:
        """The constant weights."""
        return dict(zip(self.task_names, self.weights.tolist(), strict=True))
