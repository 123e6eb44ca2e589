"""Helpers shared by the loss-weighting strategies (not a public API).

* :func:`ordered_losses` puts named losses in the strategy's task order.
* :func:`weighted_total` builds ``sum_i w_i L_i (+ aux)``.
* :class:`SharedGradients` computes per-task gradients on the model's shared
  parameters only (one ``torch.autograd.grad`` call per task, the graph
  retained) and writes combined gradients back into ``.grad``; everything
  else gets its gradient from a single ordinary backward pass. Row-sparse
  gradients (embedding tables trained with ``sparse_embedding_grad``) are
  handled in a compact form: the values of the rows the batch touched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from mtl_reco.modeling.kernels.sparse_grad import coalesce_rows, sparse_rows


def ordered_losses(
    task_names: Sequence[str], losses: Mapping[str, torch.Tensor]
) -> list[torch.Tensor]:
    """Return ``losses`` as a list in ``task_names`` order (float32 scalars).

    Raises:
        KeyError: A task has no loss, naming the missing and the given tasks.
    """
    missing = [name for name in task_names if name not in losses]
    if missing:
        raise KeyError(
            f"no loss given for task(s) {missing}; losses were given for "
            f"{sorted(losses)}"
        )
    ordered = [losses[name].float() for name in task_names]
    return [loss if loss.dim() == 0 else loss.reshape(()) for loss in ordered]


def weighted_total(
    losses: Sequence[torch.Tensor],
    weights: torch.Tensor,
    aux_loss: torch.Tensor | None,
) -> torch.Tensor:
    """``sum_i weights[i] * losses[i]`` plus the unweighted auxiliary loss."""
    total = torch.dot(torch.stack(list(losses)), weights.to(losses[0].dtype))
    if aux_loss is not None:
        total = total + aux_loss.float().reshape(())
    return total


def accumulate_grads(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]
) -> None:
    """Add ``grads`` into ``params[k].grad`` (assign when there is none yet).

    Sparse gradients are added with a sparse sum (rows concatenated).
    """
    existing: list[torch.Tensor] = []
    added: list[torch.Tensor] = []
    for p, g in zip(params, grads, strict=True):
        if p.grad is None:
            p.grad = g
        elif p.grad.is_sparse or g.is_sparse:
            p.grad = p.grad + g
        else:
            existing.append(p.grad)
            added.append(g)
    for total, grad in zip(existing, added, strict=True):
        total.add_(grad)


def grad_norms(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(K,)`` 2-norms of ``K`` gradients (a row-sparse one: of its summed rows)."""
    return torch.stack(
        [
            torch.linalg.vector_norm(coalesce_rows(g)[1] if g.is_sparse else g)
            for g in grads
        ]
    )


def unique_trainable(params: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    """Parameters that require a gradient, duplicates removed, order kept."""
    seen: set[int] = set()
    out: list[nn.Parameter] = []
    for p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


class SharedGradients:
    """Per-task gradients restricted to a model's shared parameters.

    Gradients are handed out in a *compact* form, one dense tensor per shared
    tensor: the gradient itself, or - for a tensor whose gradients are
    row-sparse with the same rows for every task (an embedding table trained
    with ``sparse_embedding_grad``: every task reaches the rows of the batch)
    - the ``(rows, ...)`` values of those rows. Norms, dot products and linear
    combinations of compact gradients equal those of the full gradients
    (the other rows are zero), and :meth:`finish` turns them back into
    gradients of the parameters' shape. When the row sets differ, the
    gradients are made dense instead (exact, slower).

    Args:
        shared: The truly shared parameters (``model.shared_parameters()``).
        all_params: Every trainable parameter of the model; those not in
            ``shared`` are the "rest" that get one plain backward pass.
        reduce: Called with each task's gradients before they are made
            compact (the strategy's ``reduce_mean``: the mean over the ranks
            of a data-parallel run).

    Raises:
        ValueError: ``shared`` holds no trainable parameter.
    """

    def __init__(
        self,
        shared: Sequence[nn.Parameter],
        all_params: Sequence[nn.Parameter],
        reduce: Callable[[Sequence[torch.Tensor]], None] | None = None,
    ) -> None:
        self.reduce = reduce
        self.params = unique_trainable(shared)
        if not self.params:
            raise ValueError("the model declares no trainable shared parameter")
        ids = {id(p) for p in self.params}
        self.rest = [p for p in unique_trainable(all_params) if id(p) not in ids]
        # rows of each compact row-sparse gradient of the current step
        self._rows: list[torch.Tensor | None] = [None] * len(self.params)
        self.numels = [p.numel() for p in self.params]

    def task_grads(self, loss: torch.Tensor) -> list[torch.Tensor]:
        """Gradient of one loss w.r.t. each shared tensor (graph retained).

        Row-sparse gradients are returned as they are (sparse); use
        :meth:`all_task_grads` for the compact form.
        """
        grads = torch.autograd.grad(
            loss, self.params, retain_graph=True, materialize_grads=True
        )
        return list(grads)

    def all_task_grads(
        self, losses: Sequence[torch.Tensor]
    ) -> list[list[torch.Tensor]]:
        """Compact gradients (see the class doc) of every loss, ``[task][tensor]``.

        Also records the rows of the compact row-sparse tensors for
        :meth:`unflatten` and :meth:`finish` (of the same step).
        """
        grads = [self.task_grads(loss) for loss in losses]
        if self.reduce is not None:
            for task in grads:
                self.reduce(task)
        self._rows = [None] * len(self.params)
        for k in range(len(self.params)):
            column = [task[k] for task in grads]
            if not any(g.is_sparse for g in column):
                continue
            pairs = [coalesce_rows(g) if g.is_sparse else None for g in column]
            first = pairs[0]
            if first is not None and all(
                pair is not None and torch.equal(pair[0], first[0]) for pair in pairs
            ):
                self._rows[k] = first[0]
                for task, pair in zip(grads, pairs, strict=True):
                    assert pair is not None
                    task[k] = pair[1]
            else:
                for task in grads:
                    task[k] = task[k].to_dense() if task[k].is_sparse else task[k]
        self.numels = [g.numel() for g in grads[0]]
        return grads

    def task_matrix(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(T, P)`` matrix: row ``i`` is task ``i``'s flattened compact gradient."""
        grads = self.all_task_grads(losses)
        first = self.params[0]
        out = torch.empty(
            len(losses), sum(self.numels), dtype=first.dtype, device=first.device
        )
        for i, task in enumerate(grads):
            torch.cat([g.reshape(-1) for g in task], out=out[i])
        return out

    def unflatten(self, vector: torch.Tensor) -> list[torch.Tensor]:
        """Split a ``(P,)`` vector of :meth:`task_matrix` into compact gradients."""
        shapes = [
            p.shape if rows is None else (rows.numel(), *p.shape[1:])
            for p, rows in zip(self.params, self._rows, strict=True)
        ]
        chunks = torch.split(vector, self.numels)
        return [chunk.view(shape) for chunk, shape in zip(chunks, shapes, strict=True)]

    def _full(self, grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Compact gradients -> gradients of the parameters' shapes."""
        return [
            g if rows is None else sparse_rows(rows, g, p.shape)
            for g, p, rows in zip(grads, self.params, self._rows, strict=True)
        ]

    def finish(
        self,
        shared_grads: Sequence[torch.Tensor],
        plain_shared: Sequence[torch.Tensor] | None,
        losses: Sequence[torch.Tensor],
        aux_loss: torch.Tensor | None,
    ) -> None:
        """Write the combined shared gradients and backpropagate the rest.

        The non-shared parameters get the plain gradient of
        ``sum_i L_i + aux`` (one backward pass). The shared parameters get
        ``shared_grads`` plus the auxiliary loss's gradient unchanged.

        Args:
            shared_grads: Combined task gradients, one compact gradient per
                shared tensor.
            plain_shared: The unmodified sum of the task gradients per shared
                tensor (needed only when ``aux_loss`` is given: the full
                backward pass adds it, and it is swapped for ``shared_grads``).
            losses: Task losses in order (their graph is consumed).
            aux_loss: The model's auxiliary loss, or ``None``.
        """
        total = torch.stack(list(losses)).sum()
        if aux_loss is None:
            if self.rest:
                torch.autograd.backward(total, inputs=self.rest)
            accumulate_grads(self.params, self._full(shared_grads))
            return
        assert plain_shared is not None
        torch.autograd.backward(total + aux_loss.float().reshape(()))
        corrections = [
            grad - plain for grad, plain in zip(shared_grads, plain_shared, strict=True)
        ]
        accumulate_grads(self.params, self._full(corrections))
