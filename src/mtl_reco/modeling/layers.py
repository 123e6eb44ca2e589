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
from typing import Any, Literal, cast

import torch
from torch import nn
from torch.nn import functional as F

from mtl_reco.modeling.schema import FeatureSchema
from mtl_reco.modeling.sparse_grad import sparse_rows, unique_rows

Activation = Literal["relu", "gelu", "silu", "tanh"]
ExpertLayout = Literal["auto", "per_expert", "fused", "bmm", "manual"]

#: Compute layouts of :class:`ExpertBank` (``auto`` resolves to one of the others).
EXPERT_LAYOUTS: tuple[str, ...] = ("auto", "per_expert", "fused", "bmm", "manual")

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


def _tracing() -> bool:
    return bool(
        torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]
        or torch.jit.is_scripting()  # type: ignore[attr-defined]
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    )


class _RowLookup(torch.autograd.Function):
    """``table[rows]`` whose gradient w.r.t. the table is row-sparse.

    The backward returns a coalesced sparse COO tensor holding each looked-up
    row once (its gradients summed), instead of a dense table-sized gradient
    (see :mod:`mtl_reco.modeling.sparse_grad`).
    """

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        ctx.table_shape = table.shape
        ctx.save_for_backward(rows)
        return table.index_select(0, rows)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (rows,) = ctx.saved_tensors
        unique, inverse = unique_rows(rows, int(ctx.table_shape[0]))
        values = grad.new_zeros(unique.numel(), grad.shape[1])
        values.index_add_(0, inverse, grad)
        return sparse_rows(unique, values, ctx.table_shape), None


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
        sparse_grad: In training mode (and outside tracing/export), give the
            tables a row-sparse gradient (:class:`_RowLookup`) instead of a
            dense one; set by the trainer from
            ``TrainerConfig.sparse_embedding_grad`` (see
            :mod:`mtl_reco.modeling.sparse_grad`). Same forward either way.

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
        self.sparse_grad = False

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
        sparse_grad = (
            self.sparse_grad
            and self.training
            and torch.is_grad_enabled()
            and not _tracing()
        )
        for g, table in enumerate(self.tables):
            ids = sparse
            if not self._identity_order:
                ids = sparse.index_select(1, self.get_buffer(f"fields_{g}"))
            rows = (ids + self.get_buffer(f"offsets_{g}")).reshape(-1)
            if sparse_grad and table.requires_grad:
                looked_up = cast(
                    torch.Tensor,
                    _RowLookup.apply(table, rows),  # type: ignore[no-untyped-call]
                )
                parts.append(looked_up.reshape(batch, -1))
                continue
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
    layout: str,
    in_dim: int,
    n_experts: int,
    dims: Sequence[int],
    activation: str = "relu",
    dropout: float = 0.0,
) -> str:
    """Turn ``auto`` into a concrete :class:`ExpertBank` layout.

    The rule comes from ``benchmarks/expert_layout.py`` (results in
    ``benchmarks/results/expert_layout.json``): a full MMoE training step
    (forward, backward, fused Adam) on a 2-core CPU, batch 2048, 376 inputs,
    8 experts, interleaved repetitions, 1 and 2 threads.

    * Among the autograd layouts, ``fused`` (one wide GEMM for the first
      layer of all experts) was fastest or tied at every size: 0.73-0.79x the
      time of separate ``nn.Linear`` experts for narrow experts (``[16]``,
      ``[64]``), 0.91-0.94x for ``[128, 64]``, within noise for
      ``[256, 128]``.
    * ``manual`` (the ``fused`` layout with a hand-written backward, see
      :class:`ExpertBank`) removes the copies and the slow transposed batched
      matmuls of ``fused``'s backward (``benchmarks/expert_layout.py``
      measures it next to the others).

    So ``auto`` is ``manual`` for ReLU experts without dropout (the only
    experts it implements) and ``fused`` otherwise; an explicit ``manual``
    with another activation or with dropout also falls back to ``fused``.
    The rule depends only on the configuration, never on timings taken at
    run time, so a saved model always rebuilds the same way (every layout
    has the same parameters anyway, so changing the rule cannot break a
    checkpoint).
    """
    if layout not in EXPERT_LAYOUTS:
        raise ValueError(
            f"unknown expert layout {layout!r}; choose one of {EXPERT_LAYOUTS}"
        )
    del in_dim, n_experts, dims  # the measured rule does not depend on sizes
    manual_ok = activation == "relu" and dropout == 0.0
    if layout == "auto" or (layout == "manual" and not manual_ok):
        return "manual" if manual_ok else "fused"
    return layout


def fast_kernels_allowed(x: torch.Tensor) -> bool:
    """Whether the hand-written training kernels of this module may run on ``x``.

    They are used on CPU tensors outside autocast, and never while a model is
    traced, scripted, compiled or exported to ONNX: then every model takes
    its plain autograd path (the same function, built from traceable ops).
    """
    if x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
        return False
    return not _tracing()


_THRESHOLD_BACKWARD = torch.ops.aten.threshold_backward.grad_input


def _first_layer_stride(width: int) -> int:
    """Row stride of the ``(B, E * h1)`` first-layer activations.

    Each expert's second layer reads (and its weight gradient contracts over
    the batch of) a column block of this matrix. With rows of a multiple of
    256 bytes the rows of a block fall into the same cache sets; 16 floats
    of padding took the second layer's weight-gradient GEMMs of 8 experts
    [256, 128] (batch 2048, 1 thread) from 12.6 to 8.7 ms in an isolated
    measurement, at a cost of under 1 % memory.
    """
    return width + 16 if width >= 256 and width % 64 == 0 else width


def _grad_needed(ctx: Any, index: int, offset: int = 0) -> bool:
    """Whether the backward pass being run needs the gradient of input ``index``.

    ``offset``: number of non-tensor arguments before input ``index`` (they
    have no entry in ``ctx.next_functions``).

    ``ctx.needs_input_grad`` says whether an input requires a gradient at
    all; when it comes from another operation (not a leaf), the engine also
    says whether that operation will run in this backward pass - it does not
    when ``torch.autograd.grad`` asks for other tensors only (e.g. GradNorm's
    last shared layer). Leaves cannot be asked during ``autograd.grad``:
    their gradient is then computed.
    """
    if not ctx.needs_input_grad[index]:
        return False
    node = ctx.next_functions[index - offset][0]
    if node is None or type(node).__name__ == "AccumulateGrad":
        return True
    try:
        return bool(torch._C._will_engine_execute_node(node))
    except (AttributeError, RuntimeError):  # not available: compute it
        return True


class _ReluFirstLayer(torch.autograd.Function):
    """First layer of ReLU expert banks: one GEMM per input group, ReLU in place.

    ``apply(group_experts, *inputs, *weights, *biases)``: input group ``g``
    (``group_experts[g]`` experts) reads ``inputs[g]`` ``(B, in_g)`` with
    weight ``(E_g * h1, in_g)`` and bias ``(E_g * h1,)``. Returns the
    activations ``(B, E * h1)``, a view of a buffer whose rows are padded
    (:func:`_first_layer_stride`); expert ``e`` owns columns
    ``[e * h1, (e + 1) * h1)``.

    Backward: the ReLU mask is applied once (``threshold_backward`` from the
    saved output), the weight gradient is computed as ``x^T g`` (the faster
    GEMM orientation here) and transposed once, and nothing is computed for
    an input the backward pass does not need (see :func:`_grad_needed`).
    """

    @staticmethod
    def forward(
        ctx: Any, group_experts: tuple[int, ...], *tensors: torch.Tensor
    ) -> torch.Tensor:
        n_groups = len(group_experts)
        inputs = tensors[:n_groups]
        weights = tensors[n_groups : 2 * n_groups]
        biases = tensors[2 * n_groups :]
        h1 = weights[0].shape[0] // group_experts[0]
        batch, width = inputs[0].shape[0], sum(group_experts) * h1
        h = inputs[0].new_empty(batch, _first_layer_stride(width))[:, :width]
        col = 0
        for x, w, b, e in zip(inputs, weights, biases, group_experts, strict=True):
            torch.addmm(b, x, w.t(), out=h[:, col : col + e * h1])
            col += e * h1
        h.relu_()
        ctx.widths = tuple(e * h1 for e in group_experts)
        ctx.save_for_backward(*inputs, *weights, h)
        return h

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        widths: tuple[int, ...] = ctx.widths
        n_groups = len(widths)
        saved = ctx.saved_tensors
        inputs, weights, h = saved[:n_groups], saved[n_groups:-1], saved[-1]
        dh = torch.empty_like(h, memory_format=torch.contiguous_format)
        _THRESHOLD_BACKWARD(grad, h, 0, grad_input=dh)
        dx: list[torch.Tensor | None] = [None] * n_groups
        dw: list[torch.Tensor | None] = [None] * n_groups
        db: list[torch.Tensor | None] = [None] * n_groups
        col = 0
        for g, (x, w, width) in enumerate(zip(inputs, weights, widths, strict=True)):
            block = dh[:, col : col + width]
            if _grad_needed(ctx, 1 + g, 1):
                dx[g] = torch.mm(block, w)
            if _grad_needed(ctx, 1 + n_groups + g, 1):
                dw[g] = torch.mm(x.t(), block).t().contiguous()
            if _grad_needed(ctx, 1 + 2 * n_groups + g, 1):
                db[g] = block.sum(0)
            col += width
        return (None, *dx, *dw, *db)


class _ReluExpertLayer(torch.autograd.Function):
    """A later layer of ReLU expert banks: one batched matmul, ReLU in place.

    ``apply(h, weight (E, out, in), bias (E, out), from_first)``: ``h`` is the
    first layer's ``(B, E * in)`` output when ``from_first`` (read as an
    ``(E, B, in)`` view), else the ``(E, B, in)`` output of the previous
    layer. Returns ``(E, B, out)``, contiguous.

    Backward: the masked output gradient is made contiguous ``(E, B, out)``
    (so both batched matmuls read contiguous operands) and the input gradient
    of a first layer is written straight into its padded ``(B, E * in)``
    layout by one GEMM per expert - no transposed copies.
    """

    @staticmethod
    def forward(
        ctx: Any,
        h: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        from_first: bool,
    ) -> torch.Tensor:
        n_exp, _, width = weight.shape
        inp = h.view(h.shape[0], n_exp, width).transpose(0, 1) if from_first else h
        out = torch.baddbmm(bias.unsqueeze(1), inp, weight.transpose(1, 2)).relu_()
        ctx.from_first = from_first
        ctx.save_for_backward(h, weight, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h, weight, out = ctx.saved_tensors
        n_exp, _, width = weight.shape
        g = torch.empty_like(out)  # (E, B, out), contiguous
        _THRESHOLD_BACKWARD(grad, out, 0, grad_input=g)
        first = ctx.from_first
        inp = h.view(h.shape[0], n_exp, width).transpose(0, 1) if first else h
        dh = dw = db = None
        if _grad_needed(ctx, 0):
            if first:
                batch = h.shape[0]
                buf = h.new_empty(batch, _first_layer_stride(n_exp * width))
                dh = buf[:, : n_exp * width]
                for e in range(n_exp):
                    torch.mm(g[e], weight[e], out=dh[:, e * width : (e + 1) * width])
            else:
                dh = torch.bmm(g, weight)
        if _grad_needed(ctx, 1):
            dw = torch.bmm(g.transpose(1, 2), inp)
        if _grad_needed(ctx, 2):
            db = g.sum(1)
        return dh, dw, db, None


class ExpertBank(nn.Module):
    """``n_experts`` expert MLPs of identical shape, stored as stacked tensors.

    The experts of MMoE (Ma et al. 2018) and the expert groups of PLE (Tang
    et al. 2020, "Progressive Layered Extraction"). Layer ``l`` of all experts
    is one weight ``(E, out_l, in_l)`` and one bias ``(E, out_l)`` (few, large
    tensors: cheap for foreach/fused optimizers), whatever the compute layout:

    * ``per_expert``: one ``F.linear`` per expert and layer, stacked at the end;
    * ``fused``: the first layer of all experts as one wide GEMM
      ``(B, in) x (in, E*h1)``, later layers as batched matmuls;
    * ``bmm``: every layer as a batched matmul over the experts;
    * ``manual``: ``fused``'s forward with a hand-written backward
      (:class:`_ReluFirstLayer`, :class:`_ReluExpertLayer`; ReLU experts
      without dropout, CPU, not while tracing/exporting - otherwise it
      computes ``fused``). Several banks can
      run as one (:func:`run_expert_banks`): banks reading the same input
      share one first-layer GEMM.

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
            ``fused``, ``bmm`` or ``manual``.

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
        self.layout = resolve_expert_layout(
            layout, in_dim, n_experts, self.dims, activation, dropout
        )
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
        if self.layout == "manual" and fast_kernels_allowed(x):
            return run_expert_banks([self], [x])
        n_exp = self.n_experts
        if self.layout in ("fused", "manual"):
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


def _cat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(list(tensors))


def run_expert_banks(
    banks: Sequence[ExpertBank], inputs: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Outputs of several expert banks as one tensor, bank ``i`` reading ``inputs[i]``.

    With ``manual`` banks of equal shapes (and :func:`fast_kernels_allowed`),
    every bank runs in one hand-written kernel: consecutive banks that read
    the same tensor (same object) share one first-layer GEMM, every later
    layer is one batched matmul over all experts. Otherwise each bank runs
    on its own and the outputs are concatenated. Same function either way.

    Args:
        banks: Expert banks with equal hidden widths.
        inputs: One ``(B, in_i)`` input per bank.

    Returns:
        ``(B, E_1 + ... + E_k, d)`` expert outputs in bank order (possibly a
        non-contiguous view).
    """
    if len(banks) != len(inputs) or not banks:
        raise ValueError("run_expert_banks needs one input per bank (at least one)")
    dims = banks[0].dims
    fast = all(b.layout == "manual" and b.dims == dims for b in banks)
    if not (fast and fast_kernels_allowed(inputs[0])):
        outs = [bank(x) for bank, x in zip(banks, inputs, strict=True)]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    groups: list[list[int]] = []
    for i, x in enumerate(inputs):
        if groups and inputs[groups[-1][0]] is x:
            groups[-1].append(i)
        else:
            groups.append([i])
    first_w = [
        _cat([banks[i].weights[0].reshape(-1, banks[i].in_dim) for i in grp])
        for grp in groups
    ]
    first_b = [_cat([banks[i].biases[0].reshape(-1) for i in grp]) for grp in groups]
    rest_w = [_cat([b.weights[k] for b in banks]) for k in range(1, len(dims))]
    rest_b = [_cat([b.biases[k] for b in banks]) for k in range(1, len(dims))]
    sizes = tuple(sum(banks[i].n_experts for i in grp) for grp in groups)
    h = cast(
        torch.Tensor,
        _ReluFirstLayer.apply(  # type: ignore[no-untyped-call]
            sizes, *[inputs[grp[0]] for grp in groups], *first_w, *first_b
        ),
    )
    if len(dims) == 1:
        return h.view(h.shape[0], sum(sizes), dims[0])
    for k, (w, b) in enumerate(zip(rest_w, rest_b, strict=True)):
        h = cast(
            torch.Tensor,
            _ReluExpertLayer.apply(h, w, b, k == 0),  # type: ignore[no-untyped-call]
        )
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
        return mix_experts(weights.unsqueeze(1), experts).squeeze(1)
    if fast_kernels_allowed(weights):
        return torch.bmm(weights, experts)
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
