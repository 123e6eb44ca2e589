"""Uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import Field
from torch import nn

from mtl_reco.modeling.config import WeightingConfig
from mtl_reco.modeling.weighting._common import ordered_losses
from mtl_reco.modeling.weighting.base import LossWeighting


class UncertaintyWeightingConfig(WeightingConfig):
    """Hyperparameters of :class:`UncertaintyWeighting`.

    Attributes:
        init_log_var: Initial log-variance ``s_i`` of every task (0: weight 1).
        lr: Learning rate of the log-variances (``None``: the optimizer's
            base learning rate).
    """

    init_log_var: float = 0.0
    lr: float | None = Field(default=None, gt=0.0)


class UncertaintyWeighting(LossWeighting):
    """Learn each task's homoscedastic uncertainty and weigh its loss by it.

    Paper: A. Kendall, Y. Gal, R. Cipolla, "Multi-Task Learning Using
    Uncertainty to Weigh Losses for Scene Geometry and Semantics", CVPR 2018.

    Each task has a learnable log-variance ``s_i = log sigma_i^2`` and the
    objective is ``sum_i exp(-s_i) L_i + s_i / 2 (+ aux)``. For a fixed loss
    ``L`` the optimum is ``exp(-s) = 1 / (2 L)``, so the weight ``exp(-s_i)``
    rises above 1 for a loss under 0.5 and falls below 1 for a larger one.
    ``s_i`` is not clamped (a clamp at ``s >= 0``, as seen in a peer library,
    freezes every task whose loss is under 0.5 at weight 1). One backward
    pass per step; the log-variances are optimised with the model, with their
    own learning rate (:meth:`param_groups`) and no weight decay.

    Args:
        task_names: Names of the loss heads, in order.
        config: :class:`UncertaintyWeightingConfig`.

    Example::

        strategy = UncertaintyWeighting(["ctr", "ctcvr"])
        theta = torch.ones(2, requires_grad=True)  # stands in for model parameters
        losses = {"ctr": 0.7 * theta[0], "ctcvr": 0.1 * theta[1]}
        strategy.backward(losses)  # {'ctr': 1.0, 'ctcvr': 1.0}
        strategy.log_vars.grad.shape  # (2,)
        [group["name"] for group in strategy.param_groups()]  # ['weighting.uwl']
    """

    name = "uwl"
    config_cls = UncertaintyWeightingConfig
    config: UncertaintyWeightingConfig

    def __init__(
        self,
        task_names: Sequence[str],
        config: UncertaintyWeightingConfig | None = None,
    ) -> None:
        super().__init__(task_names, config)
        self.log_vars = nn.Parameter(
            torch.full((len(self.task_names),), float(self.config.init_log_var))
        )

    def param_groups(self) -> list[dict[str, Any]]:
        """One group with the log-variances (own lr, no weight decay)."""
        group: dict[str, Any] = {
            "params": [self.log_vars],
            "weight_decay": 0.0,
            "name": "weighting.uwl",
        }
        if self.config.lr is not None:
            group["lr"] = self.config.lr
        return [group]

    def weighted_backward(
        self, losses: Mapping[str, torch.Tensor], aux_loss: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Backpropagate ``sum_i exp(-s_i) L_i + s_i / 2 (+ aux)``; return exp(-s)."""
        stacked = torch.stack(ordered_losses(self.task_names, losses))
        precision = torch.exp(-self.log_vars)
        total = torch.dot(precision, stacked) + 0.5 * self.log_vars.sum()
        if aux_loss is not None:
            total = total + aux_loss.float().reshape(())
        torch.autograd.backward(total)
        return precision.detach()

    def current_weights(self) -> dict[str, float]:
        """``exp(-s_i)`` per task."""
        weights = torch.exp(-self.log_vars.detach()).tolist()
        return dict(zip(self.task_names, weights, strict=True))
