"""PLE (Tang et al. 2020): task-specific and shared experts over several levels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from pydantic import Field
from torch import nn

from mtl_reco.modeling.config import Dims, ModelConfig, NonEmptyDims
from mtl_reco.modeling.layers import (
    ExpertBank,
    ExpertLayout,
    FeatureEmbedding,
    SoftmaxGate,
    Tower,
    fast_kernels_allowed,
    mix_expert_groups,
    mix_experts,
    run_expert_banks,
)
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.schema import FeatureSchema, TaskSpec


class PLEConfig(ModelConfig):
    """Hyperparameters of :class:`PLE`.

    Attributes:
        n_levels: Number of extraction levels (1 is the paper's CGC).
        n_specific_experts: Task-specific experts per task and level.
        n_shared_experts: Shared experts per level.
        expert_dims: Hidden widths of every expert MLP (at least one).
        tower_dims: Hidden widths of each task tower (may be empty).
        expert_layout: Compute layout of the expert banks (speed only; see
            :class:`~mtl_reco.modeling.layers.ExpertBank`).
    """

    n_levels: int = Field(default=2, ge=1)
    n_specific_experts: int = Field(default=2, ge=1)
    n_shared_experts: int = Field(default=2, ge=1)
    expert_dims: NonEmptyDims = Field(default_factory=lambda: [256, 128])
    tower_dims: Dims = Field(default_factory=lambda: [64])
    expert_layout: ExpertLayout = "auto"


class ExtractionLevel(nn.Module):
    """One extraction network of PLE (a CGC block when used alone).

    Paper: H. Tang, J. Liu, M. Zhao, X. Gong, "Progressive Layered Extraction
    (PLE): A Novel Multi-Task Learning (MTL) Model for Personalized
    Recommendations", RecSys 2020.

    Args:
        in_dim: Width of every input (task paths and the shared path).
        n_tasks: Number of tasks ``T``.
        n_specific: Task-specific experts per task ``Es``.
        n_shared: Shared experts ``Eh``.
        dims: Hidden widths of every expert.
        activation: Hidden activation.
        dropout: Dropout after each hidden activation.
        layout: Expert bank compute layout.
        final: The last level has no shared gate.

    Shapes:
        ``forward(task_inputs: T x (B, in_dim), shared_input (B, in_dim))``
        returns ``(T x (B, dims[-1]), (B, dims[-1]) or None)``: each task's
        mixture of its own and the shared experts, and (non-final levels) the
        shared gate's mixture of all ``T * Es + Eh`` experts.
    """

    def __init__(
        self,
        in_dim: int,
        n_tasks: int,
        n_specific: int,
        n_shared: int,
        dims: Sequence[int],
        activation: str,
        dropout: float,
        layout: str,
        final: bool,
    ) -> None:
        super().__init__()
        self.specific = nn.ModuleList(
            ExpertBank(in_dim, n_specific, dims, activation, dropout, layout)
            for _ in range(n_tasks)
        )
        self.shared = ExpertBank(in_dim, n_shared, dims, activation, dropout, layout)
        self.task_gates = nn.ModuleList(
            SoftmaxGate(in_dim, n_specific + n_shared) for _ in range(n_tasks)
        )
        self.shared_gate = (
            None if final else SoftmaxGate(in_dim, n_tasks * n_specific + n_shared)
        )
        self.out_dim = self.shared.out_dim
        # Expert column of every gate weight (task gates, then the shared gate)
        # in _forward_fused; experts ordered [specific_0, ..., specific_T-1, shared].
        n_all = n_tasks * n_specific + n_shared
        shared_cols = list(range(n_tasks * n_specific, n_all))
        columns: list[int] = []
        for t in range(n_tasks):
            columns += list(range(t * n_specific, (t + 1) * n_specific)) + shared_cols
        columns += list(range(n_all))  # shared gate
        self.register_buffer(
            "gate_columns", torch.tensor(columns, dtype=torch.int64), persistent=False
        )

    def forward(
        self,
        task_inputs: Sequence[torch.Tensor],
        shared_input: torch.Tensor,
        record: dict[str, torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Return the task mixtures and the shared mixture (None when final)."""
        if self.shared_gate is not None and fast_kernels_allowed(shared_input):
            return self._forward_fused(task_inputs, shared_input, record)
        specific = [
            bank(inp) for bank, inp in zip(self.specific, task_inputs, strict=True)
        ]
        shared = self.shared(shared_input)
        outputs = []
        for t, (gate, inp) in enumerate(zip(self.task_gates, task_inputs, strict=True)):
            weights = gate(inp)
            if record is not None:
                record[f"task{t}"] = weights
            outputs.append(mix_expert_groups(weights, [specific[t], shared]))
        shared_out = None
        if self.shared_gate is not None:
            weights = self.shared_gate(shared_input)
            if record is not None:
                record["shared"] = weights
            shared_out = mix_expert_groups(weights, [*specific, shared])
        return outputs, shared_out

    def _forward_fused(
        self,
        task_inputs: Sequence[torch.Tensor],
        shared_input: torch.Tensor,
        record: dict[str, torch.Tensor] | None,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """:meth:`forward` of a non-final level in fewer, larger operations.

        Every expert of the level runs in one call (:func:`run_expert_banks`:
        banks reading the same input share one first-layer GEMM) and each
        gate mixes the concatenated experts ``[specific_0, ...,
        specific_{T-1}, shared]`` in one batched matmul, its weights placed
        in its experts' columns (zeros elsewhere). Same function, and the
        same gradient reachability: below the final level every loss reaches
        every expert anyway (through the shared gate), and each gate still
        feeds its own mixture only. The final level keeps :meth:`forward`'s
        per-task structure, so a task's final experts and gate get no
        gradient from another task's loss.
        """
        banks = cast(list[ExpertBank], [*self.specific, self.shared])
        experts = run_expert_banks(banks, [*task_inputs, shared_input])
        n_all = experts.shape[1]
        gates = [*self.task_gates, self.shared_gate]
        columns = self.get_buffer("gate_columns")
        mixtures: list[torch.Tensor] = []
        start = 0
        for t, (gate, inp) in enumerate(
            zip(gates, [*task_inputs, shared_input], strict=True)
        ):
            weights = gate(inp)
            if record is not None:
                record["shared" if t == len(task_inputs) else f"task{t}"] = weights
            width = weights.shape[1]
            placed = torch.index_copy(
                weights.new_zeros(weights.shape[0], n_all),
                1,
                columns[start : start + width],
                weights,
            )
            start += width
            mixtures.append(mix_experts(placed, experts))
        return mixtures[:-1], mixtures[-1]


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
        levels = []
        in_dim = self.embedding.output_dim
        for level in range(cfg.n_levels):
            block = ExtractionLevel(
                in_dim,
                len(self.tasks),
                cfg.n_specific_experts,
                cfg.n_shared_experts,
                cfg.expert_dims,
                cfg.activation,
                cfg.dropout,
                cfg.expert_layout,
                final=level == cfg.n_levels - 1,
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
