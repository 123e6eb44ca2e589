"""MMoE (Ma et al. 2018): shared experts, one softmax gate and tower per task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field
from torch import nn

from mtl_reco.modeling.config import Dims, ModelConfig, NonEmptyDims
from mtl_reco.modeling.kernels.experts import ExpertLayout, expert_bank_class
from mtl_reco.modeling.layers import (
    FeatureEmbedding,
    SoftmaxGate,
    Tower,
    mix_experts,
)
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.schema import FeatureSchema, TaskSpec


class MMoEConfig(ModelConfig):
    """Hyperparameters of :class:`MMoE`.

    Attributes:
        n_experts: Number of shared experts.
        expert_dims: Hidden widths of each expert MLP (at least one).
        tower_dims: Hidden widths of each task tower (may be empty).
        expert_layout: How the experts are computed: ``auto`` (the plain
            :class:`~mtl_reco.modeling.layers.ExpertBank`) or an opt-in
            layout of :mod:`mtl_reco.modeling.kernels.experts` (``manual``,
            ``per_expert``, ``bmm``). It changes speed only, never results or
            the state dict.
    """

    n_experts: int = Field(default=8, ge=1)
    expert_dims: NonEmptyDims = Field(default_factory=lambda: [256, 128])
    tower_dims: Dims = Field(default_factory=lambda: [64])
    expert_layout: ExpertLayout = "auto"


class MMoE(MultiTaskModel):
    """Multi-gate Mixture-of-Experts.

    Paper: J. Ma, Z. Zhao, X. Yi, J. Chen, L. Hong, E. H. Chi, "Modeling Task
    Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts",
    KDD 2018.

    Every task ``t`` mixes the same ``E`` experts with its own softmax gate
    ``g_t(x)`` and feeds the mixture to its tower.

    Args:
        schema: Feature schema of the encoded data.
        tasks: Tasks to predict (``None``: every task of the schema); any
            number >= 2, classification or regression.
        config: :class:`MMoEConfig`.

    Shapes:
        ``forward(sparse (B, n_sparse) ids, dense (B, n_dense))`` returns
        ``{task: (B,)}``: logits for classification, raw values for
        regression. :meth:`gate_weights` returns ``(B, n_tasks, n_experts)``.

    Parameter roles:
        * shared: the embedding tables and the experts (every loss reaches
          every expert through its gate);
        * last shared layer: the experts' last-layer weight, one tensor
          ``(E, expert_dims[-1], in)``;
        * per task: its gate and its tower.

    Example::

        from mtl_reco.modeling.models.registry import build_model
        from mtl_reco.schema import DenseFeature, FeatureSchema, SparseFeature, TaskSpec
        user, age = SparseFeature("user", 100, 8), DenseFeature("age")
        schema = FeatureSchema((user,), (age,), (TaskSpec("ctr"), TaskSpec("ctcvr")))
        model = build_model("mmoe", schema, config={"n_experts": 4})
        sparse, dense = torch.randint(0, 100, (4, 1)), torch.randn(4, 1)
        model(sparse, dense)["ctcvr"].shape  # (4,)
        model.gate_weights(sparse, dense).shape  # (4, 2, 4)
    """

    name = "mmoe"
    config_cls = MMoEConfig
    config: MMoEConfig

    def __init__(
        self,
        schema: FeatureSchema,
        tasks: Sequence[TaskSpec | str] | None = None,
        config: MMoEConfig | None = None,
    ) -> None:
        super().__init__(schema, tasks, config)
        cfg = self.config
        self.embedding = FeatureEmbedding(self.schema, cfg.embedding_dim)
        in_dim = self.embedding.output_dim
        bank_cls = expert_bank_class(cfg.expert_layout, cfg.activation, cfg.dropout)
        self.experts = bank_cls(
            in_dim, cfg.n_experts, cfg.expert_dims, cfg.activation, cfg.dropout
        )
        self.gates = nn.ModuleList(
            SoftmaxGate(in_dim, cfg.n_experts) for _ in self.tasks
        )
        self.towers = nn.ModuleList(
            Tower(self.experts.out_dim, cfg.tower_dims, cfg.activation, cfg.dropout)
            for _ in self.tasks
        )

    def _gates(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([gate(x) for gate in self.gates], dim=1)

    def forward(
        self, sparse: torch.Tensor, dense: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return ``{task: (B,)}`` logits / regression values."""
        x = self.embedding(sparse, dense)
        mixed = mix_experts(self._gates(x), self.experts(x))  # (B, T, d)
        # unbind: one gradient copy for all towers instead of one per task
        return {
            task.name: tower(mix)
            for task, tower, mix in zip(
                self.tasks, self.towers, mixed.unbind(1), strict=True
            )
        }

    def gate_weights(self, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Mixture weights ``(B, n_tasks, n_experts)`` (each row sums to 1)."""
        return self._gates(self.embedding(sparse, dense))

    def shared_parameters(self) -> list[nn.Parameter]:
        """Embedding tables and every expert."""
        return [*self.embedding.parameters(), *self.experts.parameters()]

    def last_shared_layer(self) -> nn.Parameter:
        """The experts' last-layer weight ``(E, expert_dims[-1], in)``."""
        return self.experts.last_layer_weight()

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Each task's gate and tower."""
        return {
            task.name: [*gate.parameters(), *tower.parameters()]
            for task, gate, tower in zip(
                self.tasks, self.gates, self.towers, strict=True
            )
        }
