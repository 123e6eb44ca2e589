"""AITM (Xi et al. 2021): adaptive information transfer along a conversion funnel."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from pydantic import Field
from torch import nn

from mtl_reco.modeling.config import Dims, ModelConfig, NonEmptyDims
from mtl_reco.modeling.layers import (
    MLP,
    FeatureEmbedding,
    Tower,
    make_activation,
)
from mtl_reco.modeling.models.base import ModelContractError, MultiTaskModel
from mtl_reco.schema import FeatureSchema, TaskSpec

logger = logging.getLogger(__name__)


class AITMConfig(ModelConfig):
    """Hyperparameters of :class:`AITM`.

    Attributes:
        tower_dims: Hidden widths of each task tower (at least one); the
            last width is the representation size ``d`` that is transferred.
        head_dims: Hidden widths of each output MLP on top of the fused
            representation (may be empty: a linear head).
        calibrator_alpha: Weight of the behavioural expectation calibrator
            (0 disables it). The calibrator assumes each task is a later step
            of a click -> conversion funnel than the one before it, so it is
            only applied when the feature schema declares that funnel; on
            unordered tasks (Census income and marital status) it is off.
    """

    tower_dims: NonEmptyDims = Field(default_factory=lambda: [256, 128])
    head_dims: Dims = Field(default_factory=lambda: [64])
    calibrator_alpha: float = Field(default=0.6, ge=0.0)


class InformationTransfer(nn.Module):
    """The AIT module: attention over the transferred and the own representation.

    Paper: D. Xi, Z. Chen, P. Yan, Y. Zhang, Y. Zhu, F. Zhuang, Y. Chen,
    "Modeling the Sequential Dependence among Audience Multi-step Conversions
    with Multi-task Learning in Targeted Display Advertising", KDD 2021.

    For task ``t``: ``p = transfer(z_{t-1})`` (a Linear + activation of the
    previous task's fused representation) and ``q = q_t`` (task ``t``'s tower
    output). Each ``u in {p, q}`` gets the score ``<h1(u), h2(u)> / sqrt(d)``;
    the softmax of the two scores weighs ``h3(u)``, and the weighted sum is
    ``z_t``. ``h1``, ``h2``, ``h3`` are linear projections.

    Args:
        dim: Representation size ``d``.
        activation: Activation of the transfer layer.

    Shapes:
        ``forward(previous (B, d), own (B, d))`` -> ``(B, d)``.
    """

    def __init__(self, dim: int, activation: str = "relu") -> None:
        super().__init__()
        self.transfer = nn.Sequential(nn.Linear(dim, dim), make_activation(activation))
        self.h1 = nn.Linear(dim, dim)
        self.h2 = nn.Linear(dim, dim)
        self.h3 = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, previous: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """Return the fused ``(B, d)`` representation of the current task."""
        u = torch.stack([self.transfer(previous), own], dim=1)  # (B, 2, d)
        scores = (self.h1(u) * self.h2(u)).sum(-1) * self.scale  # (B, 2)
        weights = torch.softmax(scores, dim=1)
        return torch.einsum("bu,bud->bd", weights, self.h3(u))


class AITM(MultiTaskModel):
    """Adaptive Information Transfer Multi-task model.

    Paper: D. Xi, Z. Chen, P. Yan, Y. Zhang, Y. Zhu, F. Zhuang, Y. Chen,
    "Modeling the Sequential Dependence among Audience Multi-step Conversions
    with Multi-task Learning in Targeted Display Advertising", KDD 2021.

    Tasks are steps of a funnel, in the given order (e.g. ctr then ctcvr;
    when the schema declares a funnel, click must come before conversion).
    Every task has a tower over the shared embedding; task ``t >= 1`` fuses
    its tower output with the transfer of task ``t-1``'s fused
    representation (:class:`InformationTransfer`); an output MLP turns each
    fused representation into a logit. The behavioural expectation
    calibrator ``alpha * sum_t mean(max(p_t - p_{t-1}, 0))`` is the model's
    :meth:`auxiliary_loss`; it is on only when the schema declares a click ->
    conversion funnel among the tasks (:attr:`calibrated`).

    Args:
        schema: Feature schema of the encoded data.
        tasks: Tasks in funnel order (``None``: the schema's order); any
            number >= 2, classification only.
        config: :class:`AITMConfig`.

    Shapes:
        ``forward(sparse (B, n_sparse) ids, dense (B, n_dense))`` returns
        ``{task: (B,)}`` logits.

    Parameter roles:
        * shared: the embedding and the first task's tower (every later loss
          reaches it through the chain of transfers);
        * last shared layer: the first tower's last Linear weight;
        * per task: task 0 owns its output MLP; task ``t >= 1`` owns its
          tower, its AIT module (transfer and attention) and its output MLP.
          With 3+ tasks, the towers and AIT modules of middle tasks are also
          reached by later tasks' losses; they still belong to their task.

    Example::

        from mtl_reco.modeling.models.registry import build_model
        from mtl_reco.schema import DenseFeature, FeatureSchema, SparseFeature, TaskSpec
        user, age = SparseFeature("user", 100, 8), DenseFeature("age")
        tasks = (TaskSpec("click"), TaskSpec("cart"), TaskSpec("buy"))  # funnel order
        model = build_model("aitm", FeatureSchema((user,), (age,), tasks))
        out = model(torch.randint(0, 100, (4, 1)), torch.randn(4, 1))
        list(out)  # ['click', 'cart', 'buy']
        out["buy"].shape  # (4,)
    """

    name = "aitm"
    config_cls = AITMConfig
    config: AITMConfig
    supports_regression = False

    def __init__(
        self,
        schema: FeatureSchema,
        tasks: Sequence[TaskSpec | str] | None = None,
        config: AITMConfig | None = None,
    ) -> None:
        super().__init__(schema, tasks, config)
        funnel = self.schema.funnel
        names = list(self.task_names)
        if funnel is not None and names.index(funnel.click) > names.index(
            funnel.conversion
        ):
            raise ModelContractError(
                "AITM's tasks must follow the funnel order: put the click task "
                f"{funnel.click!r} before the conversion task {funnel.conversion!r} "
                f"(got {names})"
            )
        cfg = self.config
        self.calibrated = cfg.calibrator_alpha > 0 and funnel is not None
        """Whether the calibrator is applied (``alpha > 0`` and a funnel)."""
        if cfg.calibrator_alpha > 0 and funnel is None:
            logger.info(
                "AITM: calibrator off (calibrator_alpha %g ignored): the tasks %s "
                "do not form a click -> conversion funnel",
                cfg.calibrator_alpha,
                names,
            )
        self.embedding = FeatureEmbedding(self.schema, cfg.embedding_dim)
        in_dim = self.embedding.output_dim
        self.towers = nn.ModuleList(
            MLP(in_dim, cfg.tower_dims, cfg.activation, cfg.dropout) for _ in self.tasks
        )
        dim = cfg.tower_dims[-1]
        self.transfers = nn.ModuleList(
            InformationTransfer(dim, cfg.activation) for _ in self.tasks[1:]
        )
        self.heads = nn.ModuleList(
            Tower(dim, cfg.head_dims, cfg.activation, cfg.dropout) for _ in self.tasks
        )

    def forward(
        self, sparse: torch.Tensor, dense: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return ``{task: (B,)}`` logits."""
        x = self.embedding(sparse, dense)
        fused = self.towers[0](x)
        out = {self.tasks[0].name: self.heads[0](fused)}
        for t in range(1, len(self.tasks)):
            fused = self.transfers[t - 1](fused, self.towers[t](x))
            out[self.tasks[t].name] = self.heads[t](fused)
        return out

    def auxiliary_loss(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Calibrator ``alpha * sum_t mean(max(p_t - p_{t-1}, 0))``, ``p = sigmoid``.

        Penalises a later funnel step predicted likelier than the step before
        it. ``None`` when ``calibrator_alpha`` is 0 or the tasks are no funnel.
        """
        if not self.calibrated:
            return None
        alpha = self.config.calibrator_alpha
        # float32 like the task losses (logits are bfloat16 under CUDA autocast)
        probs = [torch.sigmoid(outputs[name].float()) for name in self.task_names]
        gaps = [torch.relu(cur - prev).mean() for prev, cur in pairwise(probs)]
        return alpha * torch.stack(gaps).sum()

    def shared_parameters(self) -> list[nn.Parameter]:
        """Embedding tables and the first task's tower."""
        return [*self.embedding.parameters(), *self.towers[0].parameters()]

    def last_shared_layer(self) -> nn.Parameter:
        """The first task tower's last Linear weight."""
        tower = self.towers[0]
        assert isinstance(tower, MLP)
        weight = tower.linears()[-1].weight
        assert isinstance(weight, nn.Parameter)
        return weight

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Task 0: its output MLP; task t >= 1: tower, AIT module, output MLP."""
        owned = {self.tasks[0].name: list(self.heads[0].parameters())}
        for t in range(1, len(self.tasks)):
            owned[self.tasks[t].name] = [
                *self.towers[t].parameters(),
                *self.transfers[t - 1].parameters(),
                *self.heads[t].parameters(),
            ]
        return owned
