"""SharedBottom (Caruana 1997): one shared MLP, one tower per task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field
from torch import nn

from mtl_reco.modeling.config import Dims, ModelConfig, NonEmptyDims
from mtl_reco.modeling.layers import MLP, FeatureEmbedding, Tower
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.schema import FeatureSchema, TaskSpec


class SharedBottomConfig(ModelConfig):
    """Hyperparameters of :class:`SharedBottom`.

    Attributes:
        bottom_dims: Hidden widths of the shared bottom MLP (at least one).
        tower_dims: Hidden widths of each task tower (may be empty).
    """

    bottom_dims: NonEmptyDims = Field(default_factory=lambda: [256, 128])
    tower_dims: Dims = Field(default_factory=lambda: [64])


class SharedBottom(MultiTaskModel):
    """Hard parameter sharing: a shared bottom MLP feeding one tower per task.

    Paper: R. Caruana, "Multitask Learning", Machine Learning 28 (1997).

    Args:
        schema: Feature schema of the encoded data.
        tasks: Tasks to predict (``None``: every task of the schema); any
            number >= 2, classification or regression.
        config: :class:`SharedBottomConfig`.

    Shapes:
        ``forward(sparse (B, n_sparse) ids, dense (B, n_dense))`` returns
        ``{task: (B,)}``: logits for classification, raw values for regression.

    Parameter roles:
        * shared: the embedding tables and the bottom MLP (every task's loss
          flows through both);
        * last shared layer: the bottom's last Linear weight (the embedding
          sits below the bottom and is never used as GradNorm's layer);
        * per task: its tower.

    Example::

        from mtl_reco.modeling.models.registry import build_model
        from mtl_reco.schema import DenseFeature, FeatureSchema, SparseFeature, TaskSpec
        user, age = SparseFeature("user", 100, 8), DenseFeature("age")
        tasks = (TaskSpec("ctr"), TaskSpec("watch_time", "regression"))
        model = build_model("shared_bottom", FeatureSchema((user,), (age,), tasks))
        out = model(torch.randint(0, 100, (4, 1)), torch.randn(4, 1))
        list(out)  # ['ctr', 'watch_time']
        out["watch_time"].shape  # (4,)
    """

    name = "shared_bottom"
    config_cls = SharedBottomConfig
    config: SharedBottomConfig

    def __init__(
        self,
        schema: FeatureSchema,
        tasks: Sequence[TaskSpec | str] | None = None,
        config: SharedBottomConfig | None = None,
    ) -> None:
        super().__init__(schema, tasks, config)
        cfg = self.config
        self.embedding = FeatureEmbedding(self.schema, cfg.embedding_dim)
        self.bottom = MLP(
            self.embedding.output_dim, cfg.bottom_dims, cfg.activation, cfg.dropout
        )
        self.towers = nn.ModuleList(
            Tower(self.bottom.out_dim, cfg.tower_dims, cfg.activation, cfg.dropout)
            for _ in self.tasks
        )

    def forward(
        self, sparse: torch.Tensor, dense: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return ``{task: (B,)}`` logits / regression values."""
        shared = self.bottom(self.embedding(sparse, dense))
        return {
            task.name: tower(shared)
            for task, tower in zip(self.tasks, self.towers, strict=True)
        }

    def shared_parameters(self) -> list[nn.Parameter]:
        """Embedding tables and the bottom MLP."""
        return [*self.embedding.parameters(), *self.bottom.parameters()]

    def last_shared_layer(self) -> nn.Parameter:
        """The bottom MLP's last Linear weight."""
        weight = self.bottom.linears()[-1].weight
        assert isinstance(weight, nn.Parameter)
        return weight

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Each task's tower."""
        return {
            task.name: list(tower.parameters())
            for task, tower in zip(self.tasks, self.towers, strict=True)
        }
