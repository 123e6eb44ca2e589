"""PLE (Tang et al. 2020): task-specific and shared experts over several levels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field
from torch import nn

from mtl_reco.modeling.config import Dims, ModelConfig, NonEmptyDims
from mtl_reco.modeling.kernels.experts import (
    ExpertLayout,
    expert_bank_class,
    extraction_level_class,
)
from mtl_reco.modeling.layers import ExtractionLevel, FeatureEmbedding, Tower
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.schema import FeatureSchema, TaskSpec


class PLEConfig(ModelConfig):
    """Hyperparameters of :class:`PLE`.

    Attributes:
        n_levels: Number of extraction levels (1 is the paper's CGC).
        n_specific_experts: Task-specific experts per task and level.
        n_shared_experts: Shared experts per level.
        expert_dims: Hidden widths of every expert MLP (at least one).
        tower_dims: Hidden widths of each task tower (may be empty).
        expert_layout: Compute layout of the expert banks (speed only): ``auto``
            (the plain :class:`~mtl_reco.modeling.layers.ExpertBank`) or an
            opt-in layout of :mod:`mtl_reco.modeling.kernels.experts`.
    """

    n_levels: int = Field(default=2, ge=1)
    n_specific_experts: int = Field(default=2, ge=1)
    n_shared_experts: int = Field(default=2, ge=1)
    expert_dims: NonEmptyDims = Field(default_factory=lambda: [256, 128])
    tower_dims: Dims = Field(default_factory=lambda: [64])
    expert_layout: ExpertLayout = "auto"


class PLE(MultiTaskModel):
    """Progressive Layered Extraction.

    Paper: H. Tang, J. Liu, M. Zhao, X. Gong, "Progressive Layered Extraction
    (PLE): A Novel Multi-Task Learning (MTL) Model for Personalized
    Recommendations", RecSys 2020.

    ``n_levels`` stacked :class:`ExtractionLevel` blocks: at each level every
    task has its own experts and gate (over its own plus the shared experts);
    non-final levels also have a shared gate over all experts, whose output
    is the input of the next level's shared experts. Towers read the final
    level's task mixtures.

    Args:
        schema: Feature schema of the encoded data.
        tasks: Tasks to predict (``None``: every task of the schema); any
            number >= 2, classification or regression.
        config: :class:`PLEConfig`.

    Shapes:
        ``forward(sparse (B, n_sparse) ids, dense (B, n_dense))`` returns
        ``{task: (B,)}``: logits for classification, raw values for regression.

    Parameter roles:
        * shared: the embedding, the shared experts of every level and the
          shared gates of non-final levels (every loss reaches them);
        * last shared layer: the final level's shared experts' last-layer
          weight;
        * per task: its experts and gates at every level and its tower.
          Exception to "reached by one loss only": with 2+ levels, a task's
          experts below the final level also feed the shared gate, so other
          tasks' losses reach them too. They are still that task's parameters
          (the architecture gives them to it), and they are deliberately not
          in ``shared_parameters()`` (MetaBalance must not rescale them).

    Example::

        from mtl_reco.modeling.models.registry import build_model
        from mtl_reco.schema import DenseFeature, FeatureSchema, SparseFeature, TaskSpec
        user, age = SparseFeature("user", 100, 8), DenseFeature("age")
        schema = FeatureSchema((user,), (age,), (TaskSpec("ctr"), TaskSpec("ctcvr")))
        model = build_model("ple", schema, config={"n_levels": 2, "expert_dims": [16]})
        sparse, dense = torch.randint(0, 100, (4, 1)), torch.randn(4, 1)
        model(sparse, dense)["ctr"].shape  # (4,)
        model.gate_weights(sparse, dense)["level0.shared"].shape  # (4, 6)
    """

    name = "ple"
    config_cls = PLEConfig
    config: PLEConfig

    def __init__(
        self,
        schema: FeatureSchema,
        tasks: Sequence[TaskSpec | str] | None = None,
        config: PLEConfig | None = None,
    ) -> None:
        super().__init__(schema, tasks, config)
        cfg = self.config
        self.embedding = FeatureEmbedding(self.schema, cfg.embedding_dim)
        bank_cls = expert_bank_class(cfg.expert_layout, cfg.activation, cfg.dropout)
        level_cls = extraction_level_class(bank_cls)
        levels = []
        in_dim = self.embedding.output_dim
        for level in range(cfg.n_levels):
            block = level_cls(
                in_dim,
                len(self.tasks),
                cfg.n_specific_experts,
                cfg.n_shared_experts,
                cfg.expert_dims,
                cfg.activation,
                cfg.dropout,
                final=level == cfg.n_levels - 1,
                bank_cls=bank_cls,
            )
            levels.append(block)
            in_dim = block.out_dim
        self.levels = nn.ModuleList(levels)
        self.towers = nn.ModuleList(
            Tower(in_dim, cfg.tower_dims, cfg.activation, cfg.dropout)
            for _ in self.tasks
        )

    def _run(
        self,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        record: dict[str, torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        x = self.embedding(sparse, dense)
        task_inputs: list[torch.Tensor] = [x] * len(self.tasks)
        shared_input: torch.Tensor | None = x
        for i, level in enumerate(self.levels):
            assert shared_input is not None
            level_record: dict[str, torch.Tensor] | None = (
                {} if record is not None else None
            )
            task_inputs, shared_input = level(task_inputs, shared_input, level_record)
            if record is not None and level_record is not None:
                record.update({f"level{i}.{k}": v for k, v in level_record.items()})
        return task_inputs

    def forward(
        self, sparse: torch.Tensor, dense: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return ``{task: (B,)}`` logits / regression values."""
        mixtures = self._run(sparse, dense)
        return {
            task.name: tower(mix)
            for task, tower, mix in zip(self.tasks, self.towers, mixtures, strict=True)
        }

    def gate_weights(
        self, sparse: torch.Tensor, dense: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Every gate's mixture weights, keyed ``level{i}.task{t}`` / ``.shared``.

        Task gates are ``(B, Es + Eh)``, shared gates ``(B, T * Es + Eh)``;
        every row sums to 1.
        """
        record: dict[str, torch.Tensor] = {}
        self._run(sparse, dense, record)
        return record

    def shared_parameters(self) -> list[nn.Parameter]:
        """Embedding, shared experts of every level, non-final shared gates."""
        params = list(self.embedding.parameters())
        for level in self.levels:
            assert isinstance(level, ExtractionLevel)
            params += list(level.shared.parameters())
            if level.shared_gate is not None:
                params += list(level.shared_gate.parameters())
        return params

    def last_shared_layer(self) -> nn.Parameter:
        """The final level's shared experts' last-layer weight."""
        final = self.levels[len(self.levels) - 1]
        assert isinstance(final, ExtractionLevel)
        return final.shared.last_layer_weight()

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Each task's experts and gates at every level, and its tower."""
        owned: dict[str, list[nn.Parameter]] = {}
        for t, (task, tower) in enumerate(zip(self.tasks, self.towers, strict=True)):
            params: list[nn.Parameter] = []
            for level in self.levels:
                assert isinstance(level, ExtractionLevel)
                params += list(level.specific[t].parameters())
                params += list(level.task_gates[t].parameters())
            owned[task.name] = params + list(tower.parameters())
        return owned
