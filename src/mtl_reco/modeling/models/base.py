"""The contract every multi-task model fulfils.

Decisions made once, here:

* **Heads return logits** for classification tasks (train with
  ``BCEWithLogitsLoss``) and raw values for regression tasks (MSE). Funnel
  models compute CTCVR in log space and still return its logit, computed
  exactly and stably from the two branch logits (see :func:`product_logit`).
* ``forward(sparse, dense)`` takes two tensors: ``sparse`` int ids of shape
  ``(B, n_sparse)`` in schema order and ``dense`` floats of shape
  ``(B, n_dense)``; it returns ``{output_name: tensor of shape (B,)}``.
* A model declares, so that nothing outside it ever asks which class it is:
  ``task_names`` (heads that carry a supervised loss, in schema order),
  ``output_names`` (those plus latent heads such as ESMM's ``cvr``),
  ``shared_parameters()`` (parameters every loss head reaches),
  ``last_shared_layer()`` (the weight GradNorm watches: never an embedding
  table), ``task_parameters()`` (parameters owned by exactly one task, for
  per-task learning rates) and ``auxiliary_loss()`` (e.g. AITM's calibrator).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from mtl_reco.modeling.config import ModelConfig
from mtl_reco.schema import FeatureSchema, TaskSpec


class ModelContractError(ValueError):
    """The model cannot be built for these tasks/schema."""


class MultiTaskModel(nn.Module):
    """Base class of the five architectures.

    Args:
        schema: Feature schema of the encoded data.
        tasks: Tasks to predict, in order (``None``: every task of the schema).
        config: The architecture's typed hyperparameters.

    Subclasses set ``name``, ``config_cls``, ``supports_regression`` and
    ``requires_funnel`` (the model only makes sense on a click -> conversion
    funnel, so pipelines can leave it out on other data before training) and
    implement :meth:`forward`, :meth:`shared_parameters`,
    :meth:`last_shared_layer` and :meth:`task_parameters`.
    """

    name: ClassVar[str] = ""
    config_cls: ClassVar[type[ModelConfig]] = ModelConfig
    supports_regression: ClassVar[bool] = True
    requires_funnel: ClassVar[bool] = False

    def __init__(
        self,
        schema: FeatureSchema,
        tasks: Sequence[TaskSpec | str] | None = None,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.schema = schema.with_tasks(tasks) if tasks is not None else schema
        self.config = config if config is not None else self.config_cls()
        if not isinstance(self.config, self.config_cls):
            raise ModelContractError(
                f"{type(self).__name__} expects a {self.config_cls.__name__}, "
                f"got {type(self.config).__name__}"
            )
        self.tasks: tuple[TaskSpec, ...] = tuple(self.schema.tasks)
        if len(self.tasks) < 2:
            raise ModelContractError(
                f"{type(self).__name__} is a multi-task model: give at least 2 tasks, "
                f"got {[t.name for t in self.tasks]}"
            )
        if not self.supports_regression:
            reg = [t.name for t in self.tasks if t.type != "classification"]
            if reg:
                raise ModelContractError(
                    f"{type(self).__name__} supports classification tasks only; "
                    f"regression tasks given: {reg}"
                )

    # -- declared structure ---------------------------------------------------------
    @property
    def task_names(self) -> tuple[str, ...]:
        """Heads that carry a supervised loss, in order."""
        return tuple(t.name for t in self.tasks)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Every output of :meth:`forward` (task heads plus latent heads)."""
        return self.task_names

    @property
    def task_types(self) -> dict[str, str]:
        """Task name -> ``classification`` | ``regression`` for every output."""
        types = {t.name: t.type for t in self.tasks}
        return {name: types.get(name, "classification") for name in self.output_names}

    def forward(
        self, sparse: torch.Tensor, dense: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return ``{output_name: (B,) logits or regression values}``."""
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that every loss head's gradient reaches (truly shared)."""
        raise NotImplementedError

    def last_shared_layer(self) -> nn.Parameter:
        """Weight of the last shared layer (GradNorm's W); never an embedding."""
        raise NotImplementedError

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters owned by exactly one task, keyed by task name."""
        raise NotImplementedError

    @property
    def conversion_output(self) -> str | None:
        """The latent output that scores conversion given a click (pCVR), if any.

        Funnel metrics score the CVR on clicked rows with it (ESMM's ``cvr``);
        ``None`` (the default) makes them use ``p_ctcvr / p_ctr`` instead.
        """
        return None

    def auxiliary_loss(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """An extra, unweighted loss term computed from the outputs (default none)."""
        return None

    # -- conveniences shared by all models ----------------------------------------
    def predict(
        self, sparse: torch.Tensor, dense: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return probabilities for classification outputs, values for regression."""
        return to_predictions(self(sparse, dense), self.task_types)

    def spec(self) -> dict[str, object]:
        """JSON-friendly description that rebuilds the model via the registry."""
        return {
            "model": self.name,
            "config": self.config.to_dict(),
            "schema": self.schema.to_dict(),
            "tasks": [t.name for t in self.tasks],
        }


def to_predictions(
    outputs: Mapping[str, torch.Tensor], task_types: Mapping[str, str]
) -> dict[str, torch.Tensor]:
    """Raw outputs -> predictions: ``sigmoid`` for classification, as is for regression.

    ``task_types`` maps every output name to ``classification`` or
    ``regression`` (:attr:`MultiTaskModel.task_types`).
    """
    return {
        name: out if task_types[name] == "regression" else torch.sigmoid(out)
        for name, out in outputs.items()
    }


def product_logit(logit_a: torch.Tensor, logit_b: torch.Tensor) -> torch.Tensor:
    """Logit of ``sigmoid(a) * sigmoid(b)``, computed in log space.

    ``log p = logsigmoid(a) + logsigmoid(b)`` and
    ``log(1 - p) = logaddexp(logsigmoid(-a), logsigmoid(a) + logsigmoid(-b))``
    (because ``1 - s(a)s(b) = s(-a) + s(a)s(-b)``), so the result is exact and
    finite for any finite inputs; ``BCEWithLogitsLoss`` on it equals the
    binary cross-entropy of the product probability.

    Computed in at least float32: tower logits arrive in bfloat16 under CUDA
    autocast, where these element-wise ops would run in bfloat16 and miss
    the product probability by up to 7 % (relative) for rare conversions.
    """
    dtype = torch.promote_types(
        torch.promote_types(logit_a.dtype, logit_b.dtype), torch.float32
    )
    logit_a, logit_b = logit_a.to(dtype), logit_b.to(dtype)
    ls_a = nn.functional.logsigmoid(logit_a)
    log_p = ls_a + nn.functional.logsigmoid(logit_b)
    log_not_p = torch.logaddexp(
        nn.functional.logsigmoid(-logit_a), ls_a + nn.functional.logsigmoid(-logit_b)
    )
    return log_p - log_not_p
