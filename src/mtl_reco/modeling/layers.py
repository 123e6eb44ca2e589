"""Building blocks shared by the five architectures.

* :class:`FeatureEmbedding` turns ``(sparse ids, dense values)`` into one flat
  input vector per row: one embedding table per distinct embedding size (a
  single table when every field has the same size) with per-field row offsets,
  so a batch costs one gather per size instead of one lookup per field. Dense
  features are concatenated raw after the embeddings; they are always an input
  of every model.
* :class:`MLP` and :class:`Tower` (MLP + scalar head), without BatchNorm.
* :class:`SoftmaxGate`: a linear layer + softmax (no BatchNorm, so a batch of
  one row works in training mode).
* :class:`ExpertBank`: ``E`` identical expert MLPs stored as a few stacked
  tensors, computed in one of several layouts (see :data:`EXPERT_LAYOUTS` and
  :func:`resolve_expert_layout`; measured by ``benchmarks/expert_layout.py``).

Why dense features are concatenated raw rather than projected: the encoder
already scales them, and every consumer's first layer is a learned linear map
of the concatenated vector, so a separate linear projection would be
absorbed by it (a product of two linear maps is linear) and only add compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from mtl_reco.modeling.schema import FeatureSchema

Activation = Literal["relu", "gelu", "silu", "tanh"]
ExpertLayout = Literal["auto", "per_expert", "fused", "bmm"]

#: Compute layouts of :class:`ExpertBank` (``auto`` resolves to one of the others).
EXPERT_LAYOUTS: tuple[str, ...] = ("auto", "per_expert", "fused", "bmm")

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module called ``name`` (relu, gelu, silu, tanh)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}"
        ) from None


class FeatureEmbedding(nn.Module):
    """Embeds every sparse field and appends the dense features.

    Embedding layer in the style of the Embedding & MLP family of CTR models
    (e.g. Covington et al. 2016, "Deep Neural Networks for YouTube
    Recommendations"), laid out for speed: fields that share an embedding size
    share one table, and field ``j`` uses rows ``offset_j + id`` of it.

    Args:
        schema: Feature schema (sparse fields with cardinality and suggested
            size, dense fields).
        embedding_dim: Size for every sparse field (``None``: use each
            field's ``embedding_dim`` from the schema).
        init_std: Standard deviation of the normal initialisation of the
            tables.

    Shapes:
        * ``sparse``: ``(B, n_sparse)`` integer ids (int32 or int64), field
          ``j`` in ``[0, cardinality_j)``.
        * ``dense``: ``(B, n_dense)`` float32.
        * output: ``(B, output_dim)`` with ``output_dim = sum of embedding
          sizes + n_dense``: embeddings grouped by size in order of first
          appearance (one group, i.e. schema order, when all sizes are equal),
          then the raw dense values.
    """

    def __init__(
        self,
        schema: FeatureSchema,
        embedding_dim: int | None = None,
        init_std: float = 0.05,
    ) -> None:
        super().__init__()
        schema = schema.with_embedding_dim(embedding_dim)
        self.n_sparse = len(schema.sparse)
        self.n_dense = len(schema.dense)
        groups: dict[int, list[int]] = {}
        for j, feat in enumerate(schema.sparse):
            groups.setdefault(feat.embedding_dim, []).append(j)
        self.group_dims: tuple[int, ...] = tuple(groups)
        self.tables = nn.ParameterList()
        self._identity_order = len(groups) <= 1
        for g, (dim, fields) in enumerate(groups.items()):
            cards = [schema.sparse[j].cardinality for j in fields]
            offsets = [0]
            for card in cards[:-1]:
                offsets.append(offsets[-1] + card)
            table = nn.Parameter(torch.empty(sum(cards), dim))
            nn.init.normal_(table, std=init_std)
            self.tables.append(table)
            self.register_buffer(
                f"offsets_{g}", torch.tensor(offsets, dtype=torch.int64)
            )
            self.register_buffer(f"fields_{g}", torch.tensor(fields, dtype=torch.int64))
        self.field_names = tuple(schema.sparse_names)
        self.register_buffer(
            "cardinalities",
            torch.tensor([f.cardinality for f in schema.sparse], dtype=torch.int64),
            persistent=False,
        )
        self.embedding_output_dim = sum(
            dim * len(fields) for dim, fields in groups.items()
        )
        self.output_dim = self.embedding_output_dim + self.n_dense

    def check_ids(self, sparse: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the field when an id is out of range.

        :meth:`forward` does not check (it would cost a device sync per
        batch); an id beyond a field's cardinality would silently read
        another field's rows. The encoder guarantees the range; call this on
        data of unknown origin.
        """
        if sparse.shape[1] != self.n_sparse:
            raise ValueError(
                f"expected {self.n_sparse} sparse columns {list(self.field_names)}, "
                f"got {sparse.shape[1]}"
            )
        cards = self.get_buffer("cardinalities").to(sparse.device)
        bad = ((sparse < 0) | (sparse >= cards)).any(dim=0).cpu()
        if bool(bad.any()):
            fields = [
                f"{self.field_names[j]} (cardinality {int(cards[j])})"
                for j in bad.nonzero().flatten().tolist()
            ]
            raise ValueError(f"sparse ids out of range in fields: {fields}")

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Return the ``(B, output_dim)`` input vector of every row."""
        parts: list[torch.Tensor] = []
        batch = sparse.shape[0] if self.n_sparse else dense.shape[0]
        for g, table in enumerate(self.tables):
            ids = sparse
            if not self._identity_order:
                ids = sparse.index_select(1, self.get_buffer(f"fields_{g}"))
            rows = (ids + self.get_buffer(f"offsets_{g}")).reshape(-1)
            # index_select's backward (index_add) is faster on CPU than
            # F.embedding's, and it exports to ONNX as a plain Gather.
            parts.append(table.index_select(0, rows).reshape(batch, -1))
        if self.n_dense:
            parts.append(dense.to(parts[0].dtype) if parts else dense)
        if len(parts) == 1:
            return parts[0]
        return torch.cat(parts, dim=1)


class MLP(nn.Module):
    """Stack of ``Linear -> activation (-> Dropout)`` blocks, without BatchNorm.

    The multilayer perceptron (Rumelhart et al. 1986) used for bottoms,
    experts and towers. With no hidden sizes it is the identity.

    Args:
        in_dim: Input width.
        dims: Width of each hidden layer; every layer is followed by the
            activation (and dropout when ``dropout > 0``).
        activation: relu, gelu, silu or tanh.
        dropout: Dropout probability after each activation.

    Shapes:
        input ``(B, in_dim)`` -> output ``(B, out_dim)`` with
        ``out_dim = dims[-1]`` (``in_dim`` when ``dims`` is empty).
    """

    def __init__(
        self,
        in_dim: int,
        dims: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for dim in dims:
            layers.append(nn.Linear(width, dim))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = dim
        self.layers = nn.Sequential(*layers)
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, out_dim)``."""
        out: torch.Tensor = self.layers(x)
        return out

    def linears(self) -> list[nn.Linear]:
        """The Linear layers, first to last."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]


class Tower(nn.Module):
    """A task tower: an :class:`MLP` followed by a linear scalar head.

    The per-task tower of shared-bottom multi-task learning (Caruana 1997,
    "Multitask Learning"), reused by MMoE, PLE and AITM.

    Args:
        in_dim: Input width.
        dims: Hidden widths of the MLP (may be empty: a linear head only).
        activation: Hidden activation.
        dropout: Dropout after each hidden activation.

    Shapes:
        input ``(B, in_dim)`` -> output ``(B,)``: a logit for classification
        tasks, a raw value for regression tasks.
    """

    def __init__(
        self,
        in_dim: int,
        dims: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, dims, activation, dropout)
        self.head = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B,)``."""
        out: torch.Tensor = self.head(self.mlp(x)).squeeze(-1)
        return out


class SoftmaxGate(nn.Module):
    """Softmax gating network of Mixture-of-Experts models.

    The gate of MMoE (Ma et al. 2018, "Modeling Task Relationships in
    Multi-task Learning with Multi-gate Mixture-of-Experts") and PLE (Tang et
    al. 2020): ``softmax(x W + b)``. No BatchNorm, so training on a batch of
    one row works.

    Args:
        in_dim: Input width.
        n_experts: Number of experts it weighs.

    Shapes:
        input ``(B, in_dim)`` -> output ``(B, n_experts)``, non-negative,
        summing to 1 over the last dimension.
    """

    def __init__(self, in_dim: int, n_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, n_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, n_experts)`` mixture weights."""
        return torch.softmax(self.linear(x), dim=-1)


def resolve_expert_layout(
    layout: str, in_dim: int, n_experts: int, dims: Sequence[int]
) -> str:
    """Turn ``auto`` into a concrete :class:`ExpertBank` layout.

    The rule comes from ``benchmarks/expert_layout.py`` (results in
    ``benchmarks/results/expert_layout.json``): a full MMoE training step
    (forward, backward, fused Adam) on a 2-core CPU, batch 2048, 376 inputs,
    8 experts, interleaved repetitions, 1 and 2 threads.

    * Narrow experts (``[16]``, ``[64]``): ``fused`` (one wide GEMM for the
      first layer of all experts) took 0.73-0.79x the time of separate
      ``nn.Linear`` experts; ``per_expert`` and ``bmm`` were at 0.95-1.06x.
    * ``[128, 64]``: ``fused`` 0.91-0.94x, the others 0.97-1.08x.
    * Wide experts (``[256, 128]``): every layout within noise of the others
      (medians within ~5 %, quartile ranges overlapping): the GEMMs dominate
      and already run near the machine's GEMM speed.

    So ``auto`` is ``fused`` for every size: fastest or tied everywhere, and
    few large tensors. The rule depends only on sizes, never on timings taken
    at run time, so a saved model always rebuilds the same way (every layout
    has the same parameters anyway, so changing the rule cannot break a
    checkpoint).
    """
    if layout not in EXPERT_LAYOUTS:
        raise ValueError(
            f"unknown expert layout {layout!r}; choose one of {EXPERT_LAYOUTS}"
        )
    if layout != "auto":
        return layout
    del in_dim, n_experts, dims  # the measured rule does not depend on sizes
    return "fused"


class ExpertBank(nn.Module):
    """``n_experts`` expert MLPs of identical shape, stored as stacked tensors.

    The experts of MMoE (Ma et al. 2018) and the expert groups of PLE (Tang
    et al. 2020, "Progressive Layered Extraction"). Layer ``l`` of all experts
    is one weight ``(E, out_l, in_l)`` and one bias ``(E, out_l)`` (few, large
    tensors: cheap for foreach/fused optimizers), whatever the compute layout:

    * ``per_expert``: one ``F.linear`` per expert and layer, stacked at the end;
    * ``fused``: the first layer of all experts as one wide GEMM
      ``(B, in) x (in, E*h1)``, later layers as batched matmuls;
    * ``bmm``: every layer as a batched matmul over the experts.

    All layouts compute the same function with the same parameters, so the
    layout can change after training (state dicts are interchangeable).

    Args:
        in_dim: Input width.
        n_experts: Number of experts ``E``.
        dims: Hidden widths of each expert (at least one); every layer is
            followed by the activation (and dropout).
        activation: relu, gelu, silu or tanh.
        dropout: Dropout probability after each activation.
        layout: ``auto`` (see :func:`resolve_expert_layout`), ``per_expert``,
            ``fused`` or ``bmm``.

    Shapes:
        input ``(B, in_dim)`` -> output ``(B, E, dims[-1])`` (possibly a
        non-contiguous view; use :func:`mix_experts` to combine it).
    """

    def __init__(
        self,
        in_dim: int,
        n_experts: int,
        dims: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        layout: str = "auto",
    ) -> None:
        super().__init__()
        if n_experts < 1:
            raise ValueError(f"n_experts must be >= 1, got {n_experts}")
        if not dims:
            raise ValueError("an expert needs at least one hidden layer (dims)")
        self.in_dim = in_dim
        self.n_experts = n_experts
        self.dims = tuple(int(d) for d in dims)
        self.out_dim = self.dims[-1]
        self.layout = resolve_expert_layout(layout, in_dim, n_experts, self.dims)
        self.act = make_activation(activation)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        width = in_dim
        for dim in self.dims:
            weight = nn.Parameter(torch.empty(n_experts, dim, width))
            bias = nn.Parameter(torch.empty(n_experts, dim))
            # Same distribution as nn.Linear's default initialisation, per expert.
            bound = 1.0 / math.sqrt(width)
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)
            self.weights.append(weight)
            self.biases.append(bias)
            width = dim

    def last_layer_weight(self) -> nn.Parameter:
        """Weight of the experts' last layer, ``(E, dims[-1], in)``."""
        weight: nn.Parameter = self.weights[len(self.weights) - 1]
        return weight

    def _block(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.drop(self.act(x))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, E, dims[-1])`` expert outputs."""
        if self.layout == "per_expert":
            return self._forward_per_expert(x)
        n_exp = self.n_experts
        if self.layout == "fused":
            w0, b0 = self.weights[0], self.biases[0]
            h = self._block(F.linear(x, w0.reshape(-1, self.in_dim), b0.reshape(-1)))
            if len(self.dims) == 1:
                return h.view(x.shape[0], n_exp, self.dims[0])
            # (B, E*h1) -> (E, B, h1) for the batched matmuls that follow.
            h = h.view(x.shape[0], n_exp, self.dims[0]).transpose(0, 1)
            layers = range(1, len(self.dims))
        else:  # bmm
            h = x.unsqueeze(0).expand(n_exp, -1, -1)
            layers = range(len(self.dims))
        for layer in layers:
            weight, bias = self.weights[layer], self.biases[layer]
            h = self._block(torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2)))
        return h.transpose(0, 1)

    def _forward_per_expert(self, x: torch.Tensor) -> torch.Tensor:
        # unbind's backward stacks the per-expert gradients in one copy.
        per_layer = [
            (w.unbind(0), b.unbind(0))
            for w, b in zip(self.weights, self.biases, strict=True)
        ]
        outs = []
        for e in range(self.n_experts):
            h = x
            for ws, bs in per_layer:
                h = self._block(F.linear(h, ws[e], bs[e]))
            outs.append(h)
        return torch.stack(outs, dim=1)


def mix_experts(weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Gate-weighted sums of expert outputs.

    Args:
        weights: ``(B, G, E)`` mixture weights of ``G`` gates (or ``(B, E)``
            for one gate).
        experts: ``(B, E, d)`` expert outputs (a view is fine).

    Returns:
        ``(B, G, d)`` (or ``(B, d)`` for ``(B, E)`` weights).
    """
    if weights.dim() == 2:
        return mix_experts(weights.unsqueeze(1), experts).squeeze(1)
    return torch.einsum("bge,bed->bgd", weights, experts)


def mix_expert_groups(
    weights: torch.Tensor, groups: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Gate-weighted sum over several expert groups without concatenating them.

    Args:
        weights: ``(B, E_1 + ... + E_k)`` mixture weights, in group order.
        groups: Expert outputs ``(B, E_i, d)`` of each group.

    Returns:
        ``(B, d)``.
    """
    sizes = [int(g.shape[1]) for g in groups]
    parts = torch.split(weights, sizes, dim=1)
    total = mix_experts(parts[0], groups[0])
    for part, group in zip(parts[1:], groups[1:], strict=True):
        total = total + mix_experts(part, group)
    return total


def check_dims(name: str, dims: Sequence[int], *, allow_empty: bool = False) -> None:
    """Raise ``ConfigError`` unless ``dims`` is a list of positive widths.

    Args:
        name: Config field name, for the message.
        dims: Layer widths.
        allow_empty: Accept an empty list.
    """
    from mtl_reco.modeling.config import ConfigError

    if not dims and not allow_empty:
        raise ConfigError(f"{name} needs at least one layer width, got {list(dims)}")
    bad = [d for d in dims if d < 1]
    if bad:
        raise ConfigError(f"{name}: layer widths must be >= 1, got {list(dims)}")
