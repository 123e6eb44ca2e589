"""MetaBalance (He, Feng, Cheng, Ji, Guo and Caverlee, WWW 2022)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from pydantic import Field

from mtl_reco.modeling.config import ConfigError, WeightingConfig
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.weighting._common import (
    SharedGradients,
    grad_norms,
    ordered_losses,
)
from mtl_reco.modeling.weighting.base import LossWeighting


class MetaBalanceConfig(WeightingConfig):
    """Hyperparameters of :class:`MetaBalance`.

    Defaults are those of the authors' reference implementation
    (``facebookresearch/MetaBalance``: relax factor 0.7, beta 0.9 "set
    empirically"); the paper tunes the relax factor per dataset.

    Attributes:
        main_task: The target task whose gradient magnitude the auxiliary
            tasks are pulled towards (``None``: the last task, i.e. the
            deepest funnel step such as CTCVR).
        relax_factor: ``r`` in ``[0, 1]``: 1 equalises every auxiliary
            gradient norm to the main one, 0 leaves the gradients unchanged.
        beta: Moving-average factor of the gradient norms, in ``[0, 1)``.
        eps: Floor of an auxiliary norm in the rescaling ratio.
    """

    main_task: str | None = None
    relax_factor: float = Field(default=0.7, ge=0.0, le=1.0)
    beta: float = Field(default=0.9, ge=0.0, lt=1.0)
    eps: float = Field(default=1e-12, gt=0.0)


class MetaBalance(LossWeighting):
    """Pull auxiliary-task gradient magnitudes towards the main task's.

    Paper: Y. He, X. Feng, C. Cheng, G. Ji, Y. Guo, J. Caverlee, "MetaBalance:
    Improving Multi-Task Recommendations via Adapting Gradient Magnitudes of
    Auxiliary Tasks", The Web Conference (WWW) 2022.

    On every shared parameter tensor ``k`` (``model.shared_parameters()``
    only: task-owned experts, gates and towers are never rescaled), with
    moving averages ``m_ik <- beta m_ik + (1 - beta) ||g_ik||`` of each task's
    gradient norm (kept in a buffer), each auxiliary gradient becomes
    ``g_ik * (r * m_main,k / m_ik + (1 - r))`` and the shared gradient is the
    sum of the main gradient and the rescaled auxiliary ones. The remaining
    parameters get the plain gradient of ``sum_i L_i``; the model's auxiliary
    loss (e.g. AITM's calibrator) adds its gradient unchanged everywhere.

    Cost: one ``autograd.grad`` per task on the shared parameters, plus one
    backward pass for the rest.

    The weights returned for logging are each task's effective scale on the
    shared parameters, ``||rescaled g_i|| / ||g_i||`` (1 for the main task).

    Args:
        task_names: Names of the loss heads, in order.
        config: :class:`MetaBalanceConfig`.

    Raises:
        ConfigError: ``main_task`` is not one of the loss heads.

    Example::

        from mtl_reco.modeling.models.registry import build_model
        from mtl_reco.schema import DenseFeature, FeatureSchema, TaskSpec
        tasks = (TaskSpec("ctr"), TaskSpec("ctcvr"))
        model = build_model("mmoe", FeatureSchema((), (DenseFeature("x"),), tasks))
        strategy = MetaBalance(model.task_names)  # main task: the last one, ctcvr
        strategy.bind(model)  # once, before the first step
        out = model(torch.empty(4, 0, dtype=torch.long), torch.randn(4, 1))
        strategy.backward({t: y.square().mean() for t, y in out.items()})
        strategy.norm_averages.shape  # (2, 4)
    """

    name = "metabalance"
    reuses_graph = True
    config_cls = MetaBalanceConfig
    config: MetaBalanceConfig
    norm_averages: torch.Tensor

    def __init__(
        self, task_names: Sequence[str], config: MetaBalanceConfig | None = None
    ) -> None:
        super().__init__(task_names, config)
        main = self.config.main_task or self.task_names[-1]
        if main not in self.task_names:
            raise ConfigError(
                f"metabalance main_task {main!r} is not one of the loss heads "
                f"{list(self.task_names)}"
            )
        self.main_index = self.task_names.index(main)
        self._shared: SharedGradients | None = None
        # (T, K) moving averages; K (shared tensors) is known once bound.
        self.register_buffer("norm_averages", torch.zeros(len(self.task_names), 0))

    @property
    def main_task(self) -> str:
        """Name of the target task."""
        return self.task_names[self.main_index]

    def bind(self, model: MultiTaskModel) -> None:
        """Attach the model and size the moving averages to its shared tensors."""
        super().bind(model)
        self._shared = SharedGradients(
            model.shared_parameters(), list(model.parameters()), self.reduce_mean
        )
        k = len(self._shared.params)
        if self.norm_averages.shape[1] != k:
            self.norm_averages = torch.zeros(
                len(self.task_names), k, device=self._shared.params[0].device
            )

    @property
    def shared(self) -> SharedGradients:
        """The bound model's shared-gradient helper."""
        if self._shared is None:
            raise RuntimeError("MetaBalance.bind(model) was not called")
        return self._shared

    def weighted_backward(
        self, losses: Mapping[str, torch.Tensor], aux_loss: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Rescale auxiliary gradients on the shared tensors; plain elsewhere."""
        ordered = ordered_losses(self.task_names, losses)
        shared = self.shared
        task_grads = shared.all_task_grads(ordered)
        with torch.no_grad():
            norms = torch.stack([grad_norms(grads) for grads in task_grads]).to(
                self.norm_averages.dtype
            )  # (T, K)
            beta = self.config.beta
            self.norm_averages.mul_(beta).add_(norms, alpha=1.0 - beta)
            relax = self.config.relax_factor
            main = self.main_index
            scale = relax * self.norm_averages[main] / self.norm_averages.clamp_min(
                self.config.eps
            ) + (1.0 - relax)
            scale[main] = 1.0
            plain = None
            if aux_loss is not None:  # computed before task_grads[main] is reused
                plain = list(task_grads[0])
                for grads in task_grads[1:]:
                    plain = [a + b for a, b in zip(plain, grads, strict=True)]
            combined = task_grads[main]  # accumulated in place
            for i, grads in enumerate(task_grads):
                if i != main:
                    factors = scale[i].to(grads[0].dtype).unbind()
                    for total, grad, factor in zip(
                        combined, grads, factors, strict=True
                    ):
                        total.add_(grad * factor)
            effective = _effective_scale(scale, norms)
        shared.finish(combined, plain, ordered, aux_loss)
        return effective

    def current_weights(self) -> dict[str, float]:
        """Effective scale per task implied by the current moving averages."""
        avg = self.norm_averages.detach()
        if avg.numel() == 0 or not bool((avg > 0).any()):
            return dict.fromkeys(self.task_names, 1.0)
        relax = self.config.relax_factor
        scale = relax * avg[self.main_index] / avg.clamp_min(self.config.eps) + (
            1.0 - relax
        )
        scale[self.main_index] = 1.0
        weights = _effective_scale(scale, avg).tolist()
        return dict(zip(self.task_names, weights, strict=True))


def _effective_scale(scale: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """``||(s_ik g_ik)_k|| / ||(g_ik)_k||`` per task from per-tensor norms."""
    plain = norms.square().sum(1)
    scaled = (scale.square() * norms.square()).sum(1)
    ratio = (scaled / plain.clamp_min(1e-30)).sqrt()
    return torch.where(plain > 0, ratio, torch.ones_like(ratio))
