"""Expert banks computed by hand-written autograd kernels (opt-in, CPU training).

Selected with ``expert_layout`` in the MMoE/PLE configuration; every layout
has the parameters of :class:`~mtl_reco.modeling.layers.ExpertBank` and
computes the same function, so state dicts are interchangeable and a model
trained with one layout exports and scores with any other:

* ``auto`` / ``fused`` (default): :class:`~mtl_reco.modeling.layers.ExpertBank`
  itself, public operations only (the first layer of all experts as one wide
  GEMM, later layers as batched matmuls);
* ``per_expert``: :class:`PerExpertBank`, one ``F.linear`` per expert and layer;
* ``bmm``: :class:`BmmExpertBank`, every layer as a batched matmul;
* ``manual``: :class:`ManualExpertBank`, ``fused``'s forward with a
  hand-written backward (:class:`_ReluFirstLayer`, :class:`_ReluExpertLayer`)
  that skips the copies of autograd's version, for ReLU experts without
  dropout (otherwise ``manual`` resolves to ``fused``). PLE levels of manual
  banks are :class:`FusedExtractionLevel`: every bank of a non-final level in
  one kernel call (banks reading the same input share one first-layer GEMM).

The kernels run on CPU tensors outside autocast only, and never while a model
is traced, scripted, compiled or exported (:func:`kernels_allowed`): then
every layout takes the plain autograd path, so exported graphs are standard
operators. ``benchmarks/train_throughput.py`` measures them against the
default and against ``torch.compile`` (``TrainerConfig.compile``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, cast

import torch
from torch.nn import functional as F

from mtl_reco.modeling.layers import ExpertBank, ExtractionLevel, mix_experts

ExpertLayout = Literal["auto", "fused", "per_expert", "bmm", "manual"]
"""Values of ``expert_layout`` in the MMoE and PLE configurations."""


def tracing() -> bool:
    """Whether the model is being traced, scripted, compiled or exported."""
    return bool(
        torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]
        or torch.jit.is_scripting()  # type: ignore[attr-defined]
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    )


def kernels_allowed(x: torch.Tensor) -> bool:
    """Whether the hand-written training kernels may run on ``x``.

    They are used on CPU tensors outside autocast, and never while a model is
    traced, scripted, compiled or exported to ONNX: then every layout takes
    its plain autograd path (the same function, built from traceable ops).
    """
    if x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
        return False
    return not tracing()


class PerExpertBank(ExpertBank):
    """:class:`~mtl_reco.modeling.layers.ExpertBank` as one ``F.linear`` per expert.

    Same parameters, arguments and shapes as the base class.
    """

    layout: ClassVar[str] = "per_expert"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, E, dims[-1])`` expert outputs."""
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


class BmmExpertBank(ExpertBank):
    """:class:`~mtl_reco.modeling.layers.ExpertBank` with every layer a batched matmul.

    Same parameters, arguments and shapes as the base class.
    """

    layout: ClassVar[str] = "bmm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, E, dims[-1])`` expert outputs."""
        h = x.unsqueeze(0).expand(self.n_experts, -1, -1)
        for weight, bias in zip(self.weights, self.biases, strict=True):
            h = self._block(torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2)))
        return h.transpose(0, 1)


class ManualExpertBank(ExpertBank):
    """ReLU experts whose training step runs the hand-written kernels.

    Same parameters, arguments and shapes as
    :class:`~mtl_reco.modeling.layers.ExpertBank` (ReLU, no dropout); where
    :func:`kernels_allowed` says no it computes the base class's forward.
    """

    layout: ClassVar[str] = "manual"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, E, dims[-1])`` expert outputs."""
        if kernels_allowed(x):
            return run_expert_banks([self], [x])
        return super().forward(x)


_BANKS: dict[str, type[ExpertBank]] = {
    "fused": ExpertBank,
    "per_expert": PerExpertBank,
    "bmm": BmmExpertBank,
    "manual": ManualExpertBank,
}


def expert_bank_class(
    layout: str, activation: str = "relu", dropout: float = 0.0
) -> type[ExpertBank]:
    """The expert bank class of ``layout`` (see the module docstring).

    ``auto`` is the default :class:`~mtl_reco.modeling.layers.ExpertBank`;
    ``manual`` needs ReLU experts without dropout and is ``fused`` otherwise.

    Raises:
        ValueError: Unknown layout.
    """
    if layout == "auto":
        layout = "fused"
    if layout == "manual" and not (activation == "relu" and dropout == 0.0):
        layout = "fused"
    try:
        return _BANKS[layout]
    except KeyError:
        raise ValueError(
            f"unknown expert layout {layout!r}; choose one of {['auto', *_BANKS]}"
        ) from None


def extraction_level_class(bank_cls: type[ExpertBank]) -> type[ExtractionLevel]:
    """PLE level class for banks of ``bank_cls``: fused levels for manual banks."""
    return FusedExtractionLevel if bank_cls is ManualExpertBank else ExtractionLevel


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
    an input that needs no gradient.
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
        torch.ops.aten.threshold_backward.grad_input(grad, h, 0, grad_input=dh)
        dx: list[torch.Tensor | None] = [None] * n_groups
        dw: list[torch.Tensor | None] = [None] * n_groups
        db: list[torch.Tensor | None] = [None] * n_groups
        col = 0
        for g, (x, w, width) in enumerate(zip(inputs, weights, widths, strict=True)):
            block = dh[:, col : col + width]
            if ctx.needs_input_grad[1 + g]:
                dx[g] = torch.mm(block, w)
            if ctx.needs_input_grad[1 + n_groups + g]:
                dw[g] = torch.mm(x.t(), block).t().contiguous()
            if ctx.needs_input_grad[1 + 2 * n_groups + g]:
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
        torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=g)
        first = ctx.from_first
        inp = h.view(h.shape[0], n_exp, width).transpose(0, 1) if first else h
        dh = dw = db = None
        if ctx.needs_input_grad[0]:
            if first:
                batch = h.shape[0]
                buf = h.new_empty(batch, _first_layer_stride(n_exp * width))
                dh = buf[:, : n_exp * width]
                for e in range(n_exp):
                    torch.mm(g[e], weight[e], out=dh[:, e * width : (e + 1) * width])
            else:
                dh = torch.bmm(g, weight)
        if ctx.needs_input_grad[1]:
            dw = torch.bmm(g.transpose(1, 2), inp)
        if ctx.needs_input_grad[2]:
            db = g.sum(1)
        return dh, dw, db, None


def _cat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(list(tensors))


def run_expert_banks(
    banks: Sequence[ExpertBank], inputs: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Outputs of several expert banks as one tensor, bank ``i`` reading ``inputs[i]``.

    With :class:`ManualExpertBank` banks of equal shapes (and
    :func:`kernels_allowed`),
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
    fast = all(isinstance(b, ManualExpertBank) and b.dims == dims for b in banks)
    if not (fast and kernels_allowed(inputs[0])):
        outs = [ExpertBank.forward(b, x) for b, x in zip(banks, inputs, strict=True)]
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


class FusedExtractionLevel(ExtractionLevel):
    """:class:`~mtl_reco.modeling.layers.ExtractionLevel` of manual banks, fused.

    Same parameters, arguments and shapes as the base class; non-final levels
    run every bank in one kernel call where :func:`kernels_allowed` says yes.
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
        bank_cls: type[ExpertBank] = ManualExpertBank,
    ) -> None:
        super().__init__(
            in_dim,
            n_tasks,
            n_specific,
            n_shared,
            dims,
            activation,
            dropout,
            final,
            bank_cls,
        )
        # Expert column of every gate weight (task gates, then the shared gate)
        # in forward; experts ordered [specific_0, ..., specific_T-1, shared].
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
        """:meth:`ExtractionLevel.forward` of a non-final level in fewer operations.

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
        if self.shared_gate is None or not kernels_allowed(shared_input):
            return super().forward(task_inputs, shared_input, record)
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
