"""Row-sparse embedding gradients and the lazy optimizer update that consumes them.

Opt-in (``TrainerConfig.sparse_embedding_grad``; off by default): the
embedding tables of a model
(:class:`~mtl_reco.modeling.layers.FeatureEmbedding`, through
:func:`use_row_sparse_gradients`) receive their gradient
as a sparse COO tensor that holds only the rows the batch looked up (each row
once, summed over its occurrences), and the optimizer updates those rows only
- the "lazy" Adam of recommender training (TensorFlow Addons ``LazyAdam``,
PyTorch ``SparseAdam``). A dense gradient instead zeroes the whole table,
scatters the batch into it and runs the optimizer over every row: memory
traffic proportional to the table, not the batch.

Semantics (the one difference from dense training): a row that the batch does
not touch is left exactly as it is - no moment decay, no weight decay, and its
Adam step counter is the table's (a per-tensor count, as in ``SparseAdam``).
Touched rows get exactly the update of the dense optimizer, weight decay
included (Adam: L2 added to the row gradient; AdamW: decoupled decay of the
row; SGD: L2, momentum kept per row). With SGD, no momentum and no weight
decay, lazy and dense training are identical.

* :func:`unique_rows`, :func:`coalesce_rows`, :func:`sparse_rows`: build and
  read such gradients;
* :class:`LazyAdam`, :class:`LazyAdamW`, :class:`LazySGD`: the torch
  optimizers, unchanged for dense gradients (fused/foreach as configured),
  with a row-wise update for parameters whose gradient is sparse; their
  state has the torch optimizers' keys and shapes, so ``state_dict`` /
  ``load_state_dict`` and LR schedulers work as usual;
* :func:`clip_grad_norm_`: gradient clipping that handles sparse gradients.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from mtl_reco.modeling.kernels.experts import tracing
from mtl_reco.modeling.layers import FeatureEmbedding

__all__ = [
    "LazyAdam",
    "LazyAdamW",
    "LazySGD",
    "clip_grad_norm_",
    "coalesce_rows",
    "row_sparse_lookup",
    "sparse_rows",
    "unique_rows",
    "use_row_sparse_gradients",
]

#: Above this many table rows per looked-up id, ``torch.unique`` (a sort of
#: the ids) is cheaper than a pass over a mark array as long as the table.
_MARK_RATIO = 64


def unique_rows(rows: torch.Tensor, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted distinct values of ``rows`` and each entry's position among them.

    Args:
        rows: ``(n,)`` int64 row ids in ``[0, n_rows)``.
        n_rows: Number of rows of the table.

    Returns:
        ``(unique (u,), inverse (n,))`` with ``unique[inverse] == rows``.
        For tables up to ``64 x n`` rows a mark array replaces the sort of
        ``torch.unique`` (linear time, several times faster here).
    """
    if n_rows > _MARK_RATIO * max(int(rows.numel()), 1):
        unique, inverse = torch.unique(rows, sorted=True, return_inverse=True)
        return unique, inverse
    mark = torch.zeros(n_rows, dtype=torch.bool, device=rows.device)
    mark.index_fill_(0, rows, True)
    if mark.device.type == "cpu":  # numpy's flatnonzero: ~6x faster than nonzero
        unique = torch.from_numpy(np.flatnonzero(mark.numpy()))
    else:
        unique = mark.nonzero().squeeze(1)
    position = torch.empty(n_rows, dtype=torch.int64, device=rows.device)
    position.index_copy_(
        0, unique, torch.arange(unique.numel(), dtype=torch.int64, device=rows.device)
    )
    return unique, position.index_select(0, rows)


def sparse_rows(
    rows: torch.Tensor, values: torch.Tensor, shape: torch.Size | tuple[int, ...]
) -> torch.Tensor:
    """Coalesced sparse COO tensor of ``shape`` with ``values[i]`` in row ``rows[i]``.

    ``rows`` must be sorted and distinct (as :func:`unique_rows` returns them).
    """
    return torch.sparse_coo_tensor(
        rows.unsqueeze(0),
        values,
        tuple(shape),
        is_coalesced=True,
        check_invariants=False,
    )


def coalesce_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, values)`` of a row-sparse gradient, duplicate rows summed.

    Args:
        grad: Sparse COO tensor with one sparse dimension (rows) and dense
            row values, coalesced or not (an accumulation of several
            backward passes is not).

    Returns:
        Sorted distinct rows ``(u,)`` and their summed values ``(u, ...)``.
    """
    if not grad.is_coalesced():
        grad = grad.coalesce()
    return grad.indices()[0], grad.values()


class _RowLookup(torch.autograd.Function):
    """``table[rows]`` whose gradient w.r.t. the table is row-sparse.

    The backward returns a coalesced sparse COO tensor holding each looked-up
    row once (its gradients summed), instead of a dense table-sized gradient
    (see this module's docstring).
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


def row_sparse_lookup(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``table[rows]`` with a row-sparse gradient while gradients are recorded.

    A :data:`~mtl_reco.modeling.layers.Lookup` for
    :class:`~mtl_reco.modeling.layers.FeatureEmbedding`; a plain
    ``index_select`` when no gradient is needed or the model is traced,
    compiled or exported.
    """
    if table.requires_grad and torch.is_grad_enabled() and not tracing():
        return cast(
            torch.Tensor,
            _RowLookup.apply(table, rows),  # type: ignore[no-untyped-call]
        )
    return table.index_select(0, rows)


def use_row_sparse_gradients(model: nn.Module, enabled: bool = True) -> None:
    """Give every embedding table of ``model`` a row-sparse gradient (or not).

    Sets :attr:`FeatureEmbedding.lookup
    <mtl_reco.modeling.layers.FeatureEmbedding>` of each embedding module;
    the forward is unchanged. The trainer does this for
    ``TrainerConfig.sparse_embedding_grad`` and pairs it with the lazy
    optimizers below.
    """
    for module in model.modules():
        if isinstance(module, FeatureEmbedding):
            module.lookup = row_sparse_lookup if enabled else None


class _LazyRowsMixin:
    """Row-wise update for parameters with a sparse gradient (see module doc).

    ``step`` hides the sparse gradients from the wrapped torch optimizer,
    lets it update every dense-gradient parameter as usual (fused/foreach),
    then updates each sparse-gradient parameter on its touched rows with the
    same functional implementation, applied to gathered copies of the rows
    of the parameter and of its state, which are scattered back.
    """

    param_groups: list[dict[str, Any]]
    state: Any

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update dense-gradient parameters as usual, sparse ones row-wise."""
        lazy: list[tuple[dict[str, Any], nn.Parameter, torch.Tensor]] = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    lazy.append((group, p, p.grad))
                    p.grad = None
        try:
            loss: float | None = super().step(closure)  # type: ignore[misc]
        finally:
            for _, p, grad in lazy:
                p.grad = grad
        with torch.no_grad():
            for group, p, grad in lazy:
                rows, values = coalesce_rows(grad)
                self._update_rows(group, p, rows, values)
        return loss

    def _update_rows(
        self,
        group: dict[str, Any],
        param: nn.Parameter,
        rows: torch.Tensor,
        grad: torch.Tensor,
    ) -> None:
        raise NotImplementedError


def _module_of(cls: type) -> Any:
    return sys.modules[cls.__module__]


class LazyAdam(_LazyRowsMixin, torch.optim.Adam):  # type: ignore[misc]
    """:class:`torch.optim.Adam` with a lazy row-wise update for sparse gradients."""

    def _update_rows(
        self,
        group: dict[str, Any],
        param: nn.Parameter,
        rows: torch.Tensor,
        grad: torch.Tensor,
    ) -> None:
        state = self.state[param]
        fused = bool(group.get("fused"))
        if not state:  # the same initial state as torch.optim.Adam's
            if group["capturable"] or fused:
                state["step"] = torch.zeros(
                    (), dtype=torch.float32, device=param.device
                )
            else:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(param)
        keys = ["exp_avg", "exp_avg_sq"]
        if group["amsgrad"]:
            keys.append("max_exp_avg_sq")
        p_rows = param.index_select(0, rows)
        s_rows = {k: state[k].index_select(0, rows) for k in keys}
        beta1, beta2 = group["betas"]
        _module_of(torch.optim.Adam).adam(
            [p_rows],
            [grad],
            [s_rows["exp_avg"]],
            [s_rows["exp_avg_sq"]],
            [s_rows["max_exp_avg_sq"]] if group["amsgrad"] else [],
            [state["step"]],
            foreach=False,
            capturable=group["capturable"],
            differentiable=False,
            fused=fused,
            decoupled_weight_decay=bool(group.get("decoupled_weight_decay", False)),
            amsgrad=group["amsgrad"],
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )
        param.index_copy_(0, rows, p_rows)
        for k in keys:
            state[k].index_copy_(0, rows, s_rows[k])


class LazyAdamW(LazyAdam, torch.optim.AdamW):  # type: ignore[misc]
    """:class:`torch.optim.AdamW` with a lazy row-wise update for sparse gradients."""


class LazySGD(_LazyRowsMixin, torch.optim.SGD):  # type: ignore[misc]
    """:class:`torch.optim.SGD` with a lazy row-wise update for sparse gradients."""

    def _update_rows(
        self,
        group: dict[str, Any],
        param: nn.Parameter,
        rows: torch.Tensor,
        grad: torch.Tensor,
    ) -> None:
        state = self.state[param]
        momentum = group["momentum"]
        buffer = state.get("momentum_buffer") if momentum != 0 else None
        p_rows = param.index_select(0, rows)
        buffers: list[torch.Tensor | None] = [
            None if buffer is None else buffer.index_select(0, rows)
        ]
        _module_of(torch.optim.SGD).sgd(
            [p_rows],
            [grad],
            buffers,
            foreach=False,
            fused=False,
            weight_decay=group["weight_decay"],
            momentum=momentum,
            lr=group["lr"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
        )
        param.index_copy_(0, rows, p_rows)
        new_rows = buffers[0]
        if momentum != 0 and new_rows is not None:
            if buffer is None:
                buffer = torch.zeros_like(param)
                state["momentum_buffer"] = buffer
            buffer.index_copy_(0, rows, new_rows)


def clip_grad_norm_(params: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip the global 2-norm of the gradients of ``params``, sparse ones included.

    Sparse gradients are coalesced first (their norm is the norm of their
    summed rows); dense ones are clipped as :func:`torch.nn.utils.clip_grad_norm_`
    does. Returns the total norm before clipping.
    """
    dense: list[torch.Tensor] = []
    sparse: list[torch.Tensor] = []
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            rows, values = coalesce_rows(p.grad)
            p.grad = sparse_rows(rows, values, p.shape)
            sparse.append(values)
        else:
            dense.append(p.grad)
    tensors = dense + sparse
    if not tensors:
        return torch.zeros(())
    total = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(t) for t in tensors])
    )
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for tensor in tensors:
        tensor.mul_(coef)
    return cast(torch.Tensor, total)
