"""PCGrad, gradient surgery (Yu, Kumar, Gupta, Levine, Hausman and Finn, 2020)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mtl_reco.modeling.config import WeightingConfig
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.weighting._common import SharedGradients, ordered_losses
from mtl_reco.modeling.weighting.base import LossWeighting


class PCGradConfig(WeightingConfig):
    """Hyperparameters of :class:`PCGrad`.

    Attributes:
        seed: Seed of the generator that draws the projection order.
        eps: Floor of a squared gradient norm in the projection.
    """

    seed: int = 0
    eps: float = 1e-20


class PCGrad(LossWeighting):
    """Project away conflicting components of the task gradients.

    Paper: T. Yu, S. Kumar, A. Gupta, S. Levine, K. Hausman, C. Finn,
    "Gradient Surgery for Multi-Task Learning", NeurIPS 2020.

    On the shared parameters (``model.shared_parameters()``, flattened into
    one vector per task): for each task ``i`` and each other task ``j`` in a
    random order (a seeded generator, redrawn every step), when
    ``g_i' . g_j < 0`` the component along ``g_j`` is removed,
    ``g_i' <- g_i' - (g_i' . g_j) / ||g_j||^2 g_j``, with ``g_j`` the original
    gradient of task ``j``. The shared gradient is the sum of the projected
    ``g_i'``; non-conflicting gradients are left unchanged. The remaining
    parameters get the plain gradient of ``sum_i L_i``; the model's auxiliary
    loss adds its gradient unchanged.

    Every projected ``g_i'`` stays a linear combination of the original
    gradients, so the surgery is carried out on the ``T x T`` Gram matrix
    (one matrix product) and the result is one ``(T,) @ (T, P)`` product.
    Cost: one ``autograd.grad`` per task on the shared parameters, plus one
    backward pass for the rest. The weights returned are 1 for every task
    (PCGrad does not weigh losses).

    Args:
        task_names: Names of the loss heads, in order.
        config: :class:`PCGradConfig`.

    Example::

        from mtl_reco.modeling.models.registry import build_model
        from mtl_reco.schema import DenseFeature, FeatureSchema, TaskSpec
        tasks = (TaskSpec("ctr"), TaskSpec("ctcvr"))
        model = build_model("mmoe", FeatureSchema((), (DenseFeature("x"),), tasks))
        strategy = PCGrad(model.task_names)
        strategy.bind(model)  # once, before the first step
        out = model(torch.empty(4, 0, dtype=torch.long), torch.randn(4, 1))
        losses = {"ctr": out["ctr"].mean(), "ctcvr": -out["ctcvr"].mean()}
        strategy.backward(losses)  # {'ctr': 1.0, 'ctcvr': 1.0}
    """

    name = "pcgrad"
    reuses_graph = True
    config_cls = PCGradConfig
    config: PCGradConfig

    def __init__(
        self, task_names: Sequence[str], config: PCGradConfig | None = None
    ) -> None:
        super().__init__(task_names, config)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self._shared: SharedGradients | None = None

    def bind(self, model: MultiTaskModel) -> None:
        """Attach the model and collect its shared parameters."""
        super().bind(model)
        self._shared = SharedGradients(
            model.shared_parameters(), list(model.parameters()), self.reduce_mean
        )

    @property
    def shared(self) -> SharedGradients:
        """The bound model's shared-gradient helper."""
        if self._shared is None:
            raise RuntimeError("PCGrad.bind(model) was not called")
        return self._shared

    def get_extra_state(self) -> Any:
        """The generator's state, so checkpoints resume the same orders."""
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: Any) -> None:
        """Restore the generator's state."""
        self.generator.set_state(state["generator"])

    def combination(self, gram: torch.Tensor) -> torch.Tensor:
        """Coefficients ``c`` with ``sum_i g_i' = sum_k c_k g_k``, from the Gram matrix.

        Args:
            gram: ``(T, T)`` matrix of dot products of the original gradients.

        Returns:
            ``(T,)`` coefficients (all ones when no pair conflicts).
        """
        n = gram.shape[0]
        coef = torch.eye(n, dtype=gram.dtype, device=gram.device)
        sq_norms = gram.diagonal().clamp_min(self.config.eps)
        for i in range(n):
            others = [j for j in range(n) if j != i]
            order = torch.randperm(len(others), generator=self.generator).tolist()
            for pos in order:
                j = others[pos]
                dot = coef[i] @ gram[:, j]
                coef[i, j] -= dot.clamp(max=0.0) / sq_norms[j]
        return coef.sum(0)

    def weighted_backward(
        self, losses: Mapping[str, torch.Tensor], aux_loss: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Project conflicting shared gradients; plain gradients elsewhere."""
        ordered = ordered_losses(self.task_names, losses)
        shared = self.shared
        with torch.no_grad():
            matrix = shared.task_matrix(ordered)  # (T, P)
            coef = self.combination(matrix @ matrix.T)
            combined = shared.unflatten(coef @ matrix)
            plain = shared.unflatten(matrix.sum(0)) if aux_loss is not None else None
        shared.finish(combined, plain, ordered, aux_loss)
        return torch.ones(len(ordered), device=matrix.device)

    def current_weights(self) -> dict[str, float]:
        """PCGrad weighs every task 1."""
        return dict.fromkeys(self.task_names, 1.0)
