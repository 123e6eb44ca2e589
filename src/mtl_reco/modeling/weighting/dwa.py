"""Dynamic Weight Average (Liu, Johns and Davison, CVPR 2019)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from pydantic import Field

from mtl_reco.modeling.config import WeightingConfig
from mtl_reco.modeling.weighting._common import ordered_losses, weighted_total
from mtl_reco.modeling.weighting.base import LossWeighting


class DynamicWeightAverageConfig(WeightingConfig):
    """Hyperparameters of :class:`DynamicWeightAverage`.

    Attributes:
        temperature: Softness ``T`` of the softmax (the paper uses 2).
    """

    temperature: float = Field(default=2.0, gt=0.0)


class DynamicWeightAverage(LossWeighting):
    """Weigh each task by how slowly its loss fell over the last two epochs.

    Paper: S. Liu, E. Johns, A. J. Davison, "End-to-End Multi-Task Learning
    with Attention", CVPR 2019 (Dynamic Weight Average, eq. 7).

    At the end of each epoch ``t-1``, with ``L_k`` the epoch's mean training
    loss of task ``k``: ``r_k = L_k(t-1) / L_k(t-2)`` and
    ``w_k(t) = K exp(r_k / temperature) / sum_j exp(r_j / temperature)``
    (``K`` tasks). The first two epochs use equal weights 1. The weights and
    the last two epochs' losses live in buffers. One backward pass per step.

    Args:
        task_names: Names of the loss heads, in order.
        config: :class:`DynamicWeightAverageConfig`.

    Example::

        strategy = DynamicWeightAverage(["ctr", "ctcvr"])  # weights 1 for two epochs
        strategy.on_epoch_end({"ctr": 0.50, "ctcvr": 0.20})
        strategy.on_epoch_end({"ctr": 0.45, "ctcvr": 0.10})  # ctcvr fell faster
        [round(w, 2) for w in strategy.current_weights().values()]  # [1.1, 0.9]
        theta = torch.ones(2, requires_grad=True)  # stands in for model parameters
        strategy.weighted_backward({"ctr": theta[0], "ctcvr": theta[1]}).shape  # (2,)
    """

    name = "dwa"
    config_cls = DynamicWeightAverageConfig
    config: DynamicWeightAverageConfig
    weights: torch.Tensor
    loss_history: torch.Tensor
    epochs_seen: torch.Tensor

    def __init__(
        self,
        task_names: Sequence[str],
        config: DynamicWeightAverageConfig | None = None,
    ) -> None:
        super().__init__(task_names, config)
        n = len(self.task_names)
        self.register_buffer("weights", torch.ones(n))
        # row 0: epoch t-2, row 1: epoch t-1
        self.register_buffer("loss_history", torch.zeros(2, n, dtype=torch.float64))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.int64))

    def weighted_backward(
        self, losses: Mapping[str, torch.Tensor], aux_loss: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Backpropagate ``sum_i w_i L_i + aux`` with this epoch's weights."""
        ordered = ordered_losses(self.task_names, losses)
        torch.autograd.backward(weighted_total(ordered, self.weights, aux_loss))
        return self.weights.detach().clone()

    def on_epoch_end(self, epoch_losses: Mapping[str, float]) -> None:
        """Record the epoch's mean losses and recompute the weights."""
        missing = [n for n in self.task_names if n not in epoch_losses]
        if missing:
            raise KeyError(f"DWA needs the epoch loss of every task; missing {missing}")
        current = torch.tensor(
            [float(epoch_losses[n]) for n in self.task_names],
            dtype=self.loss_history.dtype,
            device=self.loss_history.device,
        )
        with torch.no_grad():
            self.loss_history[0] = self.loss_history[1]
            self.loss_history[1] = current
            self.epochs_seen += 1
            if int(self.epochs_seen) >= 2:
                ratio = self.loss_history[1] / self.loss_history[0].clamp_min(1e-12)
                weights = len(self.task_names) * torch.softmax(
                    ratio / self.config.temperature, dim=0
                )
                self.weights.copy_(weights.to(self.weights.dtype))

    def current_weights(self) -> dict[str, float]:
        """The weights of the current epoch."""
        return dict(zip(self.task_names, self.weights.tolist(), strict=True))
