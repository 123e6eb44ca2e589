"""GradNorm (Chen, Badrinarayanan, Lee and Rabinovich, ICML 2018)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import Field
from torch import nn

from mtl_reco.modeling.config import WeightingConfig
from mtl_reco.modeling.weighting._common import (
    accumulate_grads,
    ordered_losses,
    weighted_total,
)
from mtl_reco.modeling.weighting.base import LossWeighting


class GradNormConfig(WeightingConfig):
    """Hyperparameters of :class:`GradNorm`.

    Attributes:
        alpha: Restoring-force strength (the paper's ``alpha``; 1.5 default).
        lr: Learning rate of the task weights (``None``: the optimizer's base
            learning rate).
        min_weight: Floor that keeps every weight positive after a step.
    """

    alpha: float = Field(default=1.5, ge=0.0)
    lr: float | None = Field(default=None, gt=0.0)
    min_weight: float = Field(default=1e-4, gt=0.0)


class GradNorm(LossWeighting):
    """Learn task weights that balance gradient norms on the last shared layer.

    Paper: Z. Chen, V. Badrinarayanan, C.-Y. Lee, A. Rabinovich, "GradNorm:
    Gradient Normalization for Adaptive Loss Balancing in Deep Multitask
    Networks", ICML 2018.

    Per step, with ``W = model.last_shared_layer()`` (never an embedding):

    * ``G_i = ||grad_W (w_i L_i)||``, the gradient norm of each weighted loss;
    * ``r_i = (L_i(t) / L_i(0)) / mean_j (L_j(t) / L_j(0))``, the relative
      inverse training rate (``L_i(0)`` is recorded at the first step, in a
      buffer);
    * a target per task, ``mean_j(G_j) * r_i ** alpha``, held constant;
    * ``L_grad = sum_i |G_i - target_i|`` is differentiated w.r.t. the
      weights ``w`` only and written into ``w.grad``;
    * the model receives the gradient of ``sum_i w_i L_i + aux`` (``w``
      constant).

    Because ``w_i > 0`` is a scalar factor, ``G_i = w_i ||grad_W L_i||``
    exactly, so ``dL_grad/dw_i = sign(G_i - target_i) ||grad_W L_i||``: this
    is the same value a second-order (``create_graph``) backward through
    ``||grad_W (w_i L_i)||`` gives, without the double-backward cost. The
    per-task norms need one ``autograd.grad`` per task down to ``W`` only.

    After the optimizer step (:meth:`after_step`) the weights are floored at
    ``min_weight`` and renormalised to sum to the number of tasks.

    Args:
        task_names: Names of the loss heads, in order.
        config: :class:`GradNormConfig`.

    Example::

        from mtl_reco.modeling.models.registry import build_model
        from mtl_reco.schema import DenseFeature, FeatureSchema, TaskSpec
        tasks = (TaskSpec("ctr"), TaskSpec("ctcvr"))
        model = build_model("mmoe", FeatureSchema((), (DenseFeature("x"),), tasks))
        strategy = GradNorm(model.task_names)
        strategy.bind(model)  # once, before the first step
        out = model(torch.empty(4, 0, dtype=torch.long), torch.randn(4, 1))
        strategy.backward({t: y.square().mean() for t, y in out.items()})
        strategy.weights.grad.shape  # (2,)
    """

    name = "gradnorm"
    reuses_graph = True
    config_cls = GradNormConfig
    config: GradNormConfig
    initial_losses: torch.Tensor
    initialised: torch.Tensor

    def __init__(
        self, task_names: Sequence[str], config: GradNormConfig | None = None
    ) -> None:
        super().__init__(task_names, config)
        n = len(self.task_names)
        self.weights = nn.Parameter(torch.ones(n))
        self.register_buffer("initial_losses", torch.ones(n))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def param_groups(self) -> list[dict[str, Any]]:
        """One group with the task weights (own lr, no weight decay)."""
        group: dict[str, Any] = {
            "params": [self.weights],
            "weight_decay": 0.0,
            "name": "weighting.gradnorm",
        }
        if self.config.lr is not None:
            group["lr"] = self.config.lr
        return [group]

    def task_gradient_norms(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        """``||grad_W L_i||`` per task on the last shared layer, ``(T,)``."""
        layer = self.model.last_shared_layer()
        grads = [
            torch.autograd.grad(loss, layer, retain_graph=True, materialize_grads=True)[
                0
            ]
            for loss in losses
        ]
        self.reduce_mean(grads)  # the global batch's gradients under DDP
        norms = [torch.linalg.vector_norm(grad) for grad in grads]
        return torch.stack(norms).float()

    def weighted_backward(
        self, losses: Mapping[str, torch.Tensor], aux_loss: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Write ``dL_grad/dw`` into ``w.grad`` and backpropagate the weighted sum."""
        ordered = ordered_losses(self.task_names, losses)
        norms = self.task_gradient_norms(ordered)
        weights = self.weights.detach()
        with torch.no_grad():
            current = torch.stack(ordered).detach()
            self.reduce_mean([current])
            initial = torch.where(self.initialised, self.initial_losses, current)
            self.initial_losses.copy_(initial)
            self.initialised.fill_(True)
            ratio = current / initial.clamp_min(1e-12)
            inverse_rate = ratio / ratio.mean().clamp_min(1e-12)
            grad_norms = weights * norms
            target = grad_norms.mean() * inverse_rate.pow(self.config.alpha)
            weight_grad = torch.sign(grad_norms - target) * norms
        accumulate_grads([self.weights], [weight_grad])
        torch.autograd.backward(weighted_total(ordered, weights, aux_loss))
        return weights.clone()

    def after_step(self) -> None:
        """Keep the weights positive and renormalise them to sum to ``T``."""
        with torch.no_grad():
            self.weights.clamp_(min=self.config.min_weight)
            self.weights.mul_(len(self.task_names) / self.weights.sum())

    def current_weights(self) -> dict[str, float]:
        """The learned weights."""
        return dict(zip(self.task_names, self.weights.detach().tolist(), strict=True))
