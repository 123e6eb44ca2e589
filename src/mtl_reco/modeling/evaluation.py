"""Prediction and evaluation of a trained multi-task model.

* :func:`task_loss` - the training loss of one head from its task type
  (``BCEWithLogits`` for classification, MSE for regression); the trainer
  and :func:`evaluate_model` both use it;
* :func:`predict_raw` / :func:`predict` - logits / probabilities of every
  output of a model over a :class:`~mtl_reco.modeling.data.TensorTable`;
* :func:`evaluate_model` - the nested metrics of
  :func:`~mtl_reco.modeling.metrics.evaluate` plus the mean loss per task;
  :func:`evaluate_outputs` computes them from raw outputs already gathered
  (e.g. from every rank of a data-parallel run).

Example::

    metrics = evaluate_model(model, tables["test"])
    metrics["tasks"]["ctr"]["auc"], metrics["funnel"]["cvr_auc"]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from mtl_reco.modeling.data import BatchSource
from mtl_reco.modeling.device import resolve_device
from mtl_reco.modeling.metrics import evaluate, oracle_from_extras
from mtl_reco.modeling.models.base import MultiTaskModel, to_predictions

__all__ = [
    "evaluate_model",
    "evaluate_outputs",
    "predict",
    "predict_raw",
    "task_loss",
]


def task_loss(
    output: torch.Tensor, target: torch.Tensor, task_type: str
) -> torch.Tensor:
    """Mean training loss of one head: MSE for regression, else BCE with logits.

    ``output`` is computed in float32 at least (heads may be bfloat16 under
    autocast).
    """
    pred = output.float()
    if task_type == "regression":
        return F.mse_loss(pred, target)
    return F.binary_cross_entropy_with_logits(pred, target)


def predict_raw(
    model: MultiTaskModel,
    table: BatchSource,
    batch_size: int = 16384,
    device: str | torch.device = "auto",
) -> dict[str, torch.Tensor]:
    """Raw outputs (logits / regression values) of every output, on the CPU.

    The model is moved to ``device`` and evaluated in ``eval`` mode (its
    previous mode is restored).
    """
    dev = resolve_device(device)
    model.to(dev)
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in model.output_names}
    try:
        with torch.inference_mode():
            for batch in table.batches(batch_size, device=dev):
                for name, value in model(batch.sparse, batch.dense).items():
                    parts[name].append(value.float())
    finally:
        model.train(was_training)
    return {
        name: torch.cat(chunks).cpu() if chunks else torch.zeros(0)
        for name, chunks in parts.items()
    }


def predict(
    model: MultiTaskModel,
    table: BatchSource,
    batch_size: int = 16384,
    device: str | torch.device = "auto",
) -> dict[str, np.ndarray]:
    """Probabilities (classification, latent outputs included) or values.

    Returns:
        ``{output_name: (N,) float32 array}`` for every name in
        ``model.output_names`` (e.g. ESMM's latent ``cvr`` too).
    """
    raw = predict_raw(model, table, batch_size, device)
    return {
        name: value.numpy()
        for name, value in to_predictions(raw, model.task_types).items()
    }


def evaluate_model(
    model: MultiTaskModel,
    table: BatchSource,
    *,
    batch_size: int = 16384,
    device: str | torch.device = "auto",
    group_column: str | None = None,
    oracle: bool = True,
) -> dict[str, Any]:
    """Score ``table`` and evaluate every loss head (nested metrics result).

    Adds to :func:`~mtl_reco.modeling.metrics.evaluate`'s result the mean
    loss of each task (``tasks.<t>.loss``, the training loss function) and
    their sum (``loss``). Funnel metrics use ``model.schema.funnel``; the
    CVR on clicked rows is scored with the model's latent conversion output
    (``model.conversion_output``) when it has one. Oracle metrics use the
    table's ``true_p*`` extras when ``oracle`` is on.

    Args:
        model: The model to evaluate.
        table: Labelled split.
        batch_size: Rows per forward pass.
        device: Where to run the model.
        group_column: Extras column for GAUC (e.g. a user id), or ``None``.
        oracle: Add oracle AUCs and gaps when true propensities are present.

    Raises:
        KeyError: ``group_column`` is not one of the table's extras.
    """
    raw = predict_raw(model, table, batch_size, device)
    return evaluate_outputs(
        model,
        raw,
        table.labels_dict(),
        table.extras,
        group_column=group_column,
        oracle=oracle,
    )


def evaluate_outputs(
    model: MultiTaskModel,
    raw: Mapping[str, torch.Tensor],
    labels: Mapping[str, np.ndarray],
    extras: Mapping[str, np.ndarray],
    *,
    group_column: str | None = None,
    oracle: bool = True,
) -> dict[str, Any]:
    """:func:`evaluate_model` from raw outputs already computed.

    Args:
        model: The model that produced ``raw`` (task types, funnel).
        raw: Raw outputs per output name (:func:`predict_raw`).
        labels: Label column per task, rows aligned with ``raw``.
        extras: Passthrough columns, rows aligned with ``raw``.
        group_column: Extras column for GAUC, or ``None``.
        oracle: Add oracle AUCs and gaps when true propensities are present.

    Raises:
        KeyError: ``group_column`` is not one of ``extras``.
    """
    types = model.task_types
    probs = {name: v.numpy() for name, v in to_predictions(dict(raw), types).items()}
    tasks = [t for t in model.task_names if t in labels]
    funnel = model.schema.funnel
    cvr_name = model.conversion_output
    groups = None
    if group_column is not None:
        if group_column not in extras:
            raise KeyError(
                f"group column {group_column!r} is not in the table's extras "
                f"{sorted(extras)}"
            )
        groups = extras[group_column]
    result = evaluate(
        {t: labels[t] for t in tasks},
        probs,
        task_types=types,
        funnel=funnel,
        cvr_scores=probs[cvr_name] if (funnel is not None and cvr_name) else None,
        groups=groups,
        oracle=oracle_from_extras(dict(extras), tasks, funnel) if oracle else None,
    )
    total = 0.0
    for t in tasks:
        target = torch.from_numpy(np.ascontiguousarray(labels[t], dtype=np.float32))
        value = float(task_loss(raw[t], target, types[t])) if len(target) else math.nan
        result["tasks"][t]["loss"] = value
        total += value
    result["loss"] = total
    return result
