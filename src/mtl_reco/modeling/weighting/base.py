"""The contract every loss-weighting strategy fulfils.

One entry point: :meth:`LossWeighting.backward` turns the named task losses
(plus the model's optional auxiliary loss, always added with weight 1) into
gradients in ``.grad`` of the model's parameters and of the strategy's own
learnable parameters, and returns the task weights it used (plain floats, for
logging). The trainer calls, per batch::

    optimizer.zero_grad(set_to_none=True)
    weights = strategy.backward(losses, aux_loss)   # or weighted_backward
    optimizer.step()           # also steps the strategy's own parameters
    strategy.after_step()      # e.g. GradNorm renormalises its weights

and, per epoch, ``strategy.on_epoch_end(mean_train_losses)`` (DWA).

State (learnable weights, initial losses, moving averages, loss history)
lives in parameters and buffers, so ``state_dict()`` checkpoints it. The
strategy's own parameters are given to the trainer's optimizer through
:meth:`param_groups`, with their own learning rate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from mtl_reco.modeling.config import WeightingConfig
from mtl_reco.modeling.models.base import MultiTaskModel


class LossWeighting(nn.Module):
    """Base class of loss-weighting strategies.

    Args:
        task_names: Names of the loss heads, in order.
        config: The strategy's typed hyperparameters.
    """

    name: ClassVar[str] = ""
    config_cls: ClassVar[type[WeightingConfig]] = WeightingConfig
    reuses_graph: ClassVar[bool] = False
    """Backpropagates through one batch's graph more than once (per-task
    gradients before the final backward); ``torch.compile``'s backward
    cannot (the trainer refuses ``compile`` with such a strategy)."""

    def __init__(
        self, task_names: Sequence[str], config: WeightingConfig | None = None
    ) -> None:
        super().__init__()
        self.task_names: tuple[str, ...] = tuple(task_names)
        self.config = config if config is not None else self.config_cls()
        self._model: MultiTaskModel | None = None
        self.__dict__["_reducer"] = None

    def set_reducer(
        self, reducer: Callable[[Sequence[torch.Tensor]], None] | None
    ) -> None:
        """Average statistics over the ranks of a data-parallel run.

        The trainer sets ``reducer`` (an in-place mean over ranks) under
        ``torch.distributed``. A strategy passes through :meth:`reduce_mean`
        every per-batch quantity it combines non-linearly (per-task
        gradients, loss values), so that every rank combines those of the
        global batch and takes the same decision.
        """
        self.__dict__["_reducer"] = reducer

    def reduce_mean(self, tensors: Sequence[torch.Tensor]) -> None:
        """Average ``tensors`` in place over the ranks (nothing in one process)."""
        reducer = self.__dict__.get("_reducer")
        if reducer is not None and tensors:
            reducer(tensors)

    def bind(self, model: MultiTaskModel) -> None:
        """Attach the model whose gradients this strategy shapes (called once)."""
        if tuple(model.task_names) != self.task_names:
            raise ValueError(
                f"{type(self).__name__} was built for tasks {self.task_names}, "
                f"the model has {model.task_names}"
            )
        # Not a registered submodule: the strategy's parameters, state_dict and
        # .to() must cover its own state only, never the model's.
        self.__dict__["_model"] = model

    @property
    def model(self) -> MultiTaskModel:
        """The bound model."""
        if self._model is None:
            raise RuntimeError(f"{type(self).__name__}.bind(model) was not called")
        return self._model

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups for the strategy's own learnable parameters."""
        return []

    def backward(
        self, losses: Mapping[str, torch.Tensor], aux_loss: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Accumulate gradients of the weighted objective; return the weights used.

        Calls :meth:`weighted_backward` and turns its weights into floats.
        """
        weights = self.weighted_backward(losses, aux_loss)
        return dict(zip(self.task_names, weights.tolist(), strict=True))

    def weighted_backward(
        self, losses: Mapping[str, torch.Tensor], aux_loss: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Same as :meth:`backward`, returning the weights as a ``(T,)`` tensor.

        The tensor is detached and stays on the losses' device, so a training
        loop can accumulate it without a host-device synchronisation per batch
        (subclasses implement this method).
        """
        raise NotImplementedError

    def after_step(self) -> None:
        """Hook run after ``optimizer.step()`` (default: nothing)."""

    def on_epoch_end(self, epoch_losses: Mapping[str, float]) -> None:
        """Hook run with the epoch's mean training loss per task (default: nothing)."""

    def current_weights(self) -> dict[str, float]:
        """Weights the next step will start from (for logging)."""
        raise NotImplementedError
