"""Small test-only models implementing the MultiTaskModel contract.

* :class:`ToyModel`: embedding + one shared Linear + one Linear tower per task;
  ``tower_scale`` multiplies each tower's output (a larger scale gives that
  task a larger gradient on the shared layer). Optional auxiliary loss.
* :class:`ProbeModel`: the shared parameter is a plain vector ``theta`` and each
  task owns a scalar ``head``; the test builds losses such as ``g_i . theta``
  so that each task's shared gradient is exactly a hand-made vector ``g_i``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.schema import (
    DenseFeature,
    FeatureSchema,
    SparseFeature,
    TaskSpec,
)


def toy_schema(n_tasks: int = 2) -> FeatureSchema:
    """3 sparse fields, 2 dense features, ``n_tasks`` classification tasks."""
    return FeatureSchema(
        sparse=(
            SparseFeature("a", 7, 4),
            SparseFeature("b", 5, 4),
            SparseFeature("c", 3, 4),
        ),
        dense=(DenseFeature("x0"), DenseFeature("x1")),
        tasks=tuple(TaskSpec(f"t{i}") for i in range(n_tasks)),
    )


class ToyModel(MultiTaskModel):
    """Embedding -> shared Linear + ReLU -> one Linear tower per task."""

    name = "toy"

    def __init__(
        self,
        schema: FeatureSchema,
        tasks: Sequence[TaskSpec | str] | None = None,
        *,
        hidden: int = 8,
        tower_scale: Sequence[float] | None = None,
        aux_weight: float = 0.0,
    ) -> None:
        super().__init__(schema, tasks)
        cards = [f.cardinality for f in self.schema.sparse]
        offsets = torch.tensor([0, *torch.tensor(cards).cumsum(0)[:-1].tolist()])
        self.register_buffer("offsets", offsets)
        self.embedding = nn.Embedding(sum(cards), 4)
        in_dim = 4 * len(cards) + len(self.schema.dense)
        self.shared = nn.Linear(in_dim, hidden)
        self.towers = nn.ModuleList(nn.Linear(hidden, 1) for _ in self.tasks)
        scale = tower_scale if tower_scale is not None else [1.0] * len(self.tasks)
        self.register_buffer("scale", torch.tensor(list(scale), dtype=torch.float32))
        self.aux_weight = aux_weight

    def forward(
        self, sparse: torch.Tensor, dense: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        emb = self.embedding(sparse.long() + self.offsets).flatten(1)
        h = F.relu(self.shared(torch.cat([emb, dense], dim=1)))
        return {
            t.name: tower(h).squeeze(-1) * self.scale[i]
            for i, (t, tower) in enumerate(zip(self.tasks, self.towers, strict=True))
        }

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.embedding.parameters(), *self.shared.parameters()]

    def last_shared_layer(self) -> nn.Parameter:
        return self.shared.weight

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {
            t.name: list(tower.parameters())
            for t, tower in zip(self.tasks, self.towers, strict=True)
        }

    def auxiliary_loss(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if self.aux_weight == 0:
            return None
        first = outputs[self.task_names[0]]
        return self.aux_weight * first.square().mean()


class ProbeModel(MultiTaskModel):
    """A shared vector ``theta`` (dim ``d``) and one scalar ``head`` per task."""

    name = "probe"

    def __init__(self, n_tasks: int = 2, dim: int = 2) -> None:
        super().__init__(toy_schema(n_tasks))
        self.theta = nn.Parameter(torch.zeros(dim))
        self.heads = nn.ParameterList(
            nn.Parameter(torch.zeros(())) for _ in range(n_tasks)
        )

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.theta]

    def last_shared_layer(self) -> nn.Parameter:
        return self.theta

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {t: [h] for t, h in zip(self.task_names, self.heads, strict=True)}

    def losses(self, grads: Sequence[Sequence[float]]) -> dict[str, torch.Tensor]:
        """Losses whose gradient w.r.t. ``theta`` is ``grads[i]`` (head adds i+1)."""
        return {
            name: torch.dot(torch.tensor(g), self.theta) + (i + 1.0) * head
            for i, (name, g, head) in enumerate(
                zip(self.task_names, grads, self.heads, strict=True)
            )
        }


def random_batch(
    schema: FeatureSchema, n_rows: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ``(sparse, dense, labels)`` for ``schema`` (labels 0/1 per task)."""
    gen = torch.Generator().manual_seed(seed)
    sparse = torch.stack(
        [
            torch.randint(0, f.cardinality, (n_rows,), generator=gen)
            for f in schema.sparse
        ],
        dim=1,
    )
    dense = torch.randn(n_rows, len(schema.dense), generator=gen)
    labels = torch.randint(0, 2, (n_rows, len(schema.tasks)), generator=gen).float()
    return sparse, dense, labels


def bce_losses(
    model: MultiTaskModel,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    labels: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Per-task BCE-with-logits losses of ``model`` on one batch."""
    out = model(sparse, dense)
    return {
        name: F.binary_cross_entropy_with_logits(out[name], labels[:, i])
        for i, name in enumerate(model.task_names)
    }
