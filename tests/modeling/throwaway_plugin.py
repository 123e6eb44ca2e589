"""A pytest plugin that adds a model and a loss weighting through the registries.

Used by ``test_registry_additions.py``: ``python -m pytest -p
tests.modeling.throwaway_plugin tests/modeling -k throwaway`` runs every
registry-parametrised modeling suite for the two classes below, which nothing
else in the project names. Registration happens in ``pytest_configure`` (before
collection, so the suites' parameter lists include them), not on import: the
test that starts the subprocess imports the names from here without touching
its own process's registries.

Both are written the way a real addition would be: a config class with
defaults, a class with ``name``/``config_cls`` that fulfils the contract of
its base class, and one ``register_*`` call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
import torch
from pydantic import Field
from torch import nn

from mtl_reco.modeling.config import (
    Dims,
    ModelConfig,
    NonEmptyDims,
    WeightingConfig,
)
from mtl_reco.modeling.layers import FeatureEmbedding
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.models.registry import MODELS, register_model
from mtl_reco.modeling.weighting.base import LossWeighting
from mtl_reco.modeling.weighting.registry import STRATEGIES, register_strategy
from mtl_reco.schema import FeatureSchema, TaskSpec

MODEL_NAME = "throwaway_mtl"
STRATEGY_NAME = "throwaway_weighting"


def _mlp(in_dim: int, dims: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in dims:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    return nn.Sequential(*layers)


class ThrowawayConfig(ModelConfig):
    """Hyperparameters of :class:`ThrowawayModel`.

    Attributes:
        n_bottoms: Shared bottom MLPs whose outputs are averaged.
        bottom_dims: Hidden widths of each shared bottom.
        tower_dims: Hidden widths of each task tower.
    """

    n_bottoms: int = Field(default=3, ge=1)
    bottom_dims: NonEmptyDims = Field(default_factory=lambda: [128, 64])
    tower_dims: Dims = Field(default_factory=lambda: [32])


class ThrowawayModel(MultiTaskModel):
    """Averaged shared bottoms feeding one tower per task (a test-only model).

    Shapes: ``forward(sparse (B, F), dense (B, D)) -> {task: (B,)}`` logits
    (raw values for regression tasks).
    """

    name = MODEL_NAME
    config_cls = ThrowawayConfig
    config: ThrowawayConfig

    def __init__(
        self,
        schema: FeatureSchema,
        tasks: Sequence[TaskSpec | str] | None = None,
        config: ThrowawayConfig | None = None,
    ) -> None:
        super().__init__(schema, tasks, config)
        cfg = self.config
        self.embedding = FeatureEmbedding(self.schema, cfg.embedding_dim)
        self.bottoms = nn.ModuleList(
            _mlp(self.embedding.output_dim, cfg.bottom_dims, cfg.dropout)
            for _ in range(cfg.n_bottoms)
        )
        width = cfg.bottom_dims[-1]
        self.towers = nn.ModuleList(
            nn.Sequential(
                _mlp(width, cfg.tower_dims, cfg.dropout),
                nn.Linear(cfg.tower_dims[-1] if cfg.tower_dims else width, 1),
            )
            for _ in self.tasks
        )

    def forward(
        self, sparse: torch.Tensor, dense: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return ``{task: (B,)}``."""
        x = self.embedding(sparse, dense)
        shared = torch.stack([bottom(x) for bottom in self.bottoms]).mean(0)
        return {
            task.name: tower(shared).squeeze(-1)
            for task, tower in zip(self.tasks, self.towers, strict=True)
        }

    def shared_parameters(self) -> list[nn.Parameter]:
        """Embedding tables and every bottom."""
        return [*self.embedding.parameters(), *self.bottoms.parameters()]

    def last_shared_layer(self) -> nn.Parameter:
        """The first bottom's last Linear weight."""
        linears = [m for m in self.bottoms[0] if isinstance(m, nn.Linear)]
        return linears[-1].weight

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Each task's tower."""
        return {
            task.name: list(tower.parameters())
            for task, tower in zip(self.tasks, self.towers, strict=True)
        }


class ThrowawayWeightingConfig(WeightingConfig):
    """Hyperparameters of :class:`ThrowawayWeighting`.

    Attributes:
        momentum: Weight of the past in the moving average of each task loss.
    """

    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)


class ThrowawayWeighting(LossWeighting):
    """Weights proportional to each task's moving-average loss (a test-only strategy).

    ``w_i = T * m_i / sum_j m_j`` with ``m_i`` an exponential moving average
    of task ``i``'s loss, kept in a buffer (so checkpoints carry it).
    """

    name = STRATEGY_NAME
    config_cls = ThrowawayWeightingConfig
    config: ThrowawayWeightingConfig
    average: torch.Tensor

    def __init__(
        self,
        task_names: Sequence[str],
        config: ThrowawayWeightingConfig | None = None,
    ) -> None:
        super().__init__(task_names, config)
        self.register_buffer("average", torch.ones(len(self.task_names)))

    def _weights(self) -> torch.Tensor:
        return len(self.task_names) * self.average / self.average.sum()

    def weighted_backward(
        self, losses: Mapping[str, torch.Tensor], aux_loss: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Backpropagate ``sum_i w_i L_i + aux``; return ``w`` (then update ``m``)."""
        missing = [n for n in self.task_names if n not in losses]
        if missing:
            raise KeyError(f"no loss given for task(s) {missing}")
        stacked = torch.stack([losses[n] for n in self.task_names])
        weights = self._weights().to(stacked.device)
        total = (weights * stacked).sum()
        torch.autograd.backward(total if aux_loss is None else total + aux_loss)
        beta = self.config.momentum
        with torch.no_grad():
            self.average.mul_(beta).add_((1 - beta) * stacked.detach().float())
        return weights.detach()

    def current_weights(self) -> dict[str, float]:
        """The weights of the next step."""
        return dict(zip(self.task_names, self._weights().tolist(), strict=True))


def pytest_configure(config: pytest.Config) -> None:
    """Register both through the registries' public functions."""
    register_model(ThrowawayModel)
    register_strategy(ThrowawayWeighting)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave the registries as found."""
    MODELS.pop(MODEL_NAME, None)
    STRATEGIES.pop(STRATEGY_NAME, None)


def pytest_report_header(config: pytest.Config) -> str:
    """Say what was added (the first lines of the run's output)."""
    return f"registered through the registries: model {MODEL_NAME!r}, " + (
        f"loss weighting {STRATEGY_NAME!r}"
    )
