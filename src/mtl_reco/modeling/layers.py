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
  tensors (other compute layouts of the same parameters, opt-in, live in
  :mod:`mtl_reco.modeling.kernels`), and :func:`mix_experts` /
  :func:`mix_expert_groups` for the gate-weighted sums.
* :class:`ExtractionLevel`: PLE's extraction network (CGC) of task-specific
  and shared expert banks with their gates.

Everything here is written with public PyTorch operations only, so a model
traces, compiles (``torch.compile``) and exports to ONNX as it trains.

Why dense features are concatenated raw rather than projected: the encoder
already scales them, and every consumer's first layer is a learned linear map
of the concatenated vector, so a separate linear projection would be
absorbed by it (a product of two linear maps is linear) and only add compute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from mtl_reco.schema import FeatureSchema

Activation = Literal["relu", "gelu", "silu", "tanh"]
Lookup = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(table, rows) -> table[rows]``: how :class:`FeatureEmbedding` gathers rows."""

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

    Attributes:
        lookup: How a table's rows are gathered (:data:`Lookup`); ``None``
            (default) is ``table.index_select(0, rows)``.
            :func:`mtl_reco.modeling.kernels.sparse_grad.use_row_sparse_gradients`
            swaps in a lookup whose gradient is row-sparse. Same forward
            either way.

    Shapes:
        * ``sparse``: ``(B, n_sparse)`` integer ids (int32 or int64), field
          ``j`` in ``[0, cardinality_j)``.
        * ``dense``: ``(B, n_dense)`` float32.
        * output: ``(B, output_dim)`` with ``output_dim = sum of embedding
          sizes + n_dense``: embeddings grouped by size in order of first
          appearance (one group, i.e. schema order, when all sizes are equal),
          then the raw dense values.

    Example::

        from mtl_reco.schema import DenseFeature, FeatureSchema, SparseFeature
        fields = (SparseFeature("user", 100, 8), SparseFeature("item", 50, 4))
        schema = FeatureSchema(fields, (DenseFeature("age"),), tasks=())
        emb = FeatureEmbedding(schema)
        ids = torch.tensor([[3, 7], [0, 49]])  # field j: ids in [0, cardinality_j)
        emb(ids, torch.randn(2, 1)).shape  # (2, 13)
        FeatureEmbedding(schema, embedding_dim=16).output_dim  # 33
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
        self.lookup: Lookup | None = None

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
            looked_up = (
                table.index_select(0, rows)
                if self.lookup is None
                else self.lookup(table, rows)
            )
            parts.append(looked_up.reshape(batch, -1))
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

    Example::

        mlp = MLP(in_dim=32, dims=[64, 16], activation="gelu", dropout=0.1)
        mlp(torch.randn(8, 32)).shape  # (8, 16)
        MLP(in_dim=32, dims=[])(torch.randn(8, 32)).shape  # (8, 32)
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

    Example::

        tower = Tower(in_dim=16, dims=[8])
        tower(torch.randn(8, 16)).shape  # (8,)
        Tower(in_dim=16, dims=[])(torch.randn(8, 16)).shape  # (8,)
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

    Example::

        gate = SoftmaxGate(in_dim=32, n_experts=4)
        weights = gate(torch.randn(8, 32))
        weights.shape  # (8, 4)
        torch.allclose(weights.sum(dim=-1), torch.ones(8))  # True
    """

    def __init__(self, in_dim: int, n_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, n_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, n_experts)`` mixture weights."""
        return torch.softmax(self.linear(x), dim=-1)


class ExpertBank(nn.Module):
    """``n_experts`` expert MLPs of identical shape, stored as stacked tensors.

    The experts of MMoE (Ma et al. 2018) and the expert groups of PLE (Tang
    et al. 2020, "Progressive Layered Extraction"). Layer ``l`` of all experts
    is one weight ``(E, out_l, in_l)`` and one bias ``(E, out_l)`` (few, large
    tensors: cheap for foreach/fused optimizers). One-layer experts run as one
    wide GEMM ``(B, in) x (in, E * h)``, deeper ones as batched matmuls over
    the experts. Other compute layouts of the same
    parameters (opt-in, for speed only) are subclasses in
    :mod:`mtl_reco.modeling.kernels`; state dicts are interchangeable.

    Args:
        in_dim: Input width.
        n_experts: Number of experts ``E``.
        dims: Hidden widths of each expert (at least one); every layer is
            followed by the activation (and dropout).
        activation: relu, gelu, silu or tanh.
        dropout: Dropout probability after each activation.

    Shapes:
        input ``(B, in_dim)`` -> output ``(B, E, dims[-1])`` (possibly a
        non-contiguous view; use :func:`mix_experts` to combine it).

    Example::

        bank = ExpertBank(in_dim=32, n_experts=4, dims=[64, 16])
        bank(torch.randn(8, 32)).shape  # (8, 4, 16)
    """

    layout: ClassVar[str] = "fused"
    """Name of the compute layout (``expert_layout`` in model configurations)."""

    def __init__(
        self,
        in_dim: int,
        n_experts: int,
        dims: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
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
        self.activation = activation
        self.dropout = dropout
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
        if len(self.dims) == 1:  # one wide GEMM (B, in) x (in, E * h)
            w0, b0 = self.weights[0], self.biases[0]
            h = self._block(F.linear(x, w0.reshape(-1, self.in_dim), b0.reshape(-1)))
            return h.view(x.shape[0], self.n_experts, self.out_dim)
        # Deeper experts: batched matmuls over the experts from the first layer
        # on, so every activation is a contiguous (E, B, h) tensor in both
        # passes (a wide first GEMM would need a transposed copy before the
        # second layer and after it in the backward pass: ~10 % slower per
        # training step at [256, 128]).
        h = x.unsqueeze(0).expand(self.n_experts, -1, -1)
        for weight, bias in zip(self.weights, self.biases, strict=True):
            h = self._block(torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2)))
        return h.transpose(0, 1)


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
        return torch.matmul(weights.unsqueeze(1), experts).squeeze(1)
    return torch.matmul(weights, experts)


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
    sizes = [g.shape[1] for g in groups]
    parts = torch.split(weights, sizes, dim=1)
    total = mix_experts(parts[0], groups[0])
    for part, group in zip(parts[1:], groups[1:], strict=True):
        total = total + mix_experts(part, group)
    return total


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
        bank_cls: Expert bank class (:class:`ExpertBank` or one of its
            opt-in compute layouts in :mod:`mtl_reco.modeling.kernels`).
        final: The last level has no shared gate.

    Shapes:
        ``forward(task_inputs: T x (B, in_dim), shared_input (B, in_dim))``
        returns ``(T x (B, dims[-1]), (B, dims[-1]) or None)``: each task's
        mixture of its own and the shared experts, and (non-final levels) the
        shared gate's mixture of all ``T * Es + Eh`` experts.

    Example::

        level = ExtractionLevel(
            in_dim=32, n_tasks=2, n_specific=2, n_shared=1, dims=[16],
            activation="relu", dropout=0.0, final=False,
        )
        x = torch.randn(8, 32)
        task_outputs, shared_output = level([x, x], x)
        task_outputs[1].shape  # (8, 16)
        shared_output.shape  # (8, 16)
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
        final: bool,
        bank_cls: type[ExpertBank] = ExpertBank,
    ) -> None:
        super().__init__()
        self.specific = nn.ModuleList(
            bank_cls(in_dim, n_specific, dims, activation, dropout)
            for _ in range(n_tasks)
        )
        self.shared = bank_cls(in_dim, n_shared, dims, activation, dropout)
        self.task_gates = nn.ModuleList(
            SoftmaxGate(in_dim, n_specific + n_shared) for _ in range(n_tasks)
        )
        self.shared_gate = (
            None if final else SoftmaxGate(in_dim, n_tasks * n_specific + n_shared)
        )
        self.out_dim = self.shared.out_dim

    def forward(
        self,
        task_inputs: Sequence[torch.Tensor],
        shared_input: torch.Tensor,
        record: dict[str, torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Return the task mixtures and the shared mixture (None when final)."""
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
