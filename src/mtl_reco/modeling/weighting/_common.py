"""Helpers shared by the loss-weighting strategies (not a public API).

* :func:`ordered_losses` puts named losses in the strategy's task order.
* :func:`weighted_total` builds ``sum_i w_i L_i (+ aux)``.
* :class:`SharedGradients` computes per-task gradients on the model's shared
  parameters only (one ``torch.autograd.grad`` call per task, the graph
  retained) and writes combined gradients back into ``.grad``; everything
  else gets its gradient from a single ordinary backward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


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
    """Add ``grads`` into ``params[k].grad`` (assign when there is none yet)."""
    existing: list[torch.Tensor] = []
    added: list[torch.Tensor] = []
    for p, g in zip(params, grads, strict=True):
        if p.grad is None:
            p.grad = g
        else:
            existing.append(p.grad)
            added.append(g)
    if existing:
        torch._foreach_add_(existing, added)


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

    Args:
        shared: The truly shared parameters (``model.shared_parameters()``).
        all_params: Every trainable parameter of the model; those not in
            ``shared`` are the "rest" that get one plain backward pass.

    Raises:
        ValueError: ``shared`` holds no trainable parameter.
    """

    def __init__(
        self, shared: Sequence[nn.Parameter], all_params: Sequence[nn.Parameter]
    ) -> None:
        self.params = unique_trainable(shared)
        if not self.params:
            raise ValueError("the model declares no trainable shared parameter")
        ids = {id(p) for p in self.params}
        self.rest = [p for p in unique_trainable(all_params) if id(p) not in ids]
        self.numels = [p.numel() for p in self.params]
        self.total = sum(self.numels)

    def task_grads(self, loss: torch.Tensor) -> list[torch.Tensor]:
        """Gradient of one loss w.r.t. each shared tensor (graph retained)."""
        grads = torch.autograd.grad(
            loss, self.params, retain_graph=True, materialize_grads=True
        )
        return list(grads)

    def task_matrix(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(T, P)`` matrix: row ``i`` is task ``i``'s flattened shared gradient."""
        first = self.params[0]
        out = torch.empty(
            len(losses), self.total, dtype=first.dtype, device=first.device
        )
        for i, loss in enumerate(losses):
            grads = self.task_grads(loss)
            torch.cat([g.reshape(-1) for g in grads], out=out[i])
        return out

    def unflatten(self, vector: torch.Tensor) -> list[torch.Tensor]:
        """Split a ``(P,)`` vector into views shaped like the shared tensors."""
        return [
            chunk.view_as(p)
            for chunk, p in zip(
                torch.split(vector, self.numels), self.params, strict=True
            )
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
            shared_grads: Combined task gradients, one per shared tensor.
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
            accumulate_grads(self.params, shared_grads)
            return
        assert plain_shared is not None
        torch.autograd.backward(total + aux_loss.float().reshape(()))
        corrections = torch._foreach_sub(list(shared_grads), list(plain_shared))
        accumulate_grads(self.params, corrections)
