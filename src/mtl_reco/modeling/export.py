"""ONNX export of a multi-task model and a parity check against onnxruntime.

The exported graph takes **one input per feature**, 1-D with a dynamic batch
dimension (sparse ids int64, dense values float32), and gives **one named
output per model output** (probabilities for classification outputs, i.e.
``sigmoid`` already applied; raw values for regression outputs). It is a
single ``.onnx`` file (no external data), opset pinned to 18.

Input names are sanitised because raw feature names are not always valid
identifiers (Ali-CCP's ``101``, ``205``, ...; the legacy exporter rejects a
name starting with a digit): ``sparse_`` / ``dense_`` prefix, every character
outside ``[A-Za-z0-9_]`` replaced by ``_``, and a numeric suffix when two
names collide. The mapping travels with the file (ONNX metadata key
:data:`METADATA_KEY`, a JSON copy of the description that
:func:`export_onnx` returns), so :class:`OnnxPredictor` can take a DataFrame
with the original column names. Reading and scoring such a file needs no
torch: :mod:`mtl_reco.serving`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mtl_reco.modeling.data import Batch, TensorTable
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.serving import (
    FORMAT,
    METADATA_KEY,
    ModelFileError,
    OnnxPredictor,
)

__all__ = [
    "DEFAULT_OPSET",
    "METADATA_KEY",
    "ExportError",
    "check_parity",
    "export_onnx",
    "sanitize_name",
]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18

_INVALID = re.compile(r"[^A-Za-z0-9_]")


class ExportError(ModelFileError):
    """The model could not be exported or the ONNX file is not usable."""


def sanitize_name(name: str, prefix: str = "") -> str:
    """Return ``prefix + name`` with every char outside ``[A-Za-z0-9_]`` -> ``_``.

    A result that would start with a digit (possible only without a prefix)
    gets a leading ``_``.
    """
    clean = prefix + _INVALID.sub("_", name)
    if not clean or clean[0].isdigit():
        clean = "_" + clean
    return clean


def _unique(names: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, k = name, 1
        while candidate in seen:
            k += 1
            candidate = f"{name}_{k}"
        seen.add(candidate)
        out.append(candidate)
    return out


class _ExportWrapper(nn.Module):
    """Per-feature inputs -> stacked tensors -> ``predict`` -> tuple of outputs.

    Internal helper of :func:`export_onnx` (no paper): it adapts a
    :class:`~mtl_reco.modeling.models.base.MultiTaskModel` to one named ONNX
    input per feature.

    Args:
        model: The multi-task model.
        sparse_inputs: Sanitised names of the sparse inputs, schema order.
        dense_inputs: Sanitised names of the dense inputs, schema order.

    Shapes:
        ``forward(features)`` with ``features[name]`` of shape ``(B,)``
        returns a tuple of ``(B,)`` tensors in ``model.output_names`` order.
    """

    def __init__(
        self,
        model: MultiTaskModel,
        sparse_inputs: Sequence[str],
        dense_inputs: Sequence[str],
    ) -> None:
        super().__init__()
        self.model = model
        self.sparse_inputs = list(sparse_inputs)
        self.dense_inputs = list(dense_inputs)

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Return the model's predictions, one ``(B,)`` tensor per output."""
        first = features[(self.sparse_inputs + self.dense_inputs)[0]]
        batch = first.shape[0]
        if self.sparse_inputs:
            sparse = torch.stack([features[n] for n in self.sparse_inputs], dim=1)
        else:
            sparse = first.new_zeros((batch, 0), dtype=torch.int64)
        if self.dense_inputs:
            dense = torch.stack([features[n] for n in self.dense_inputs], dim=1)
        else:
            dense = first.new_zeros((batch, 0), dtype=torch.float32)
        preds = self.model.predict(sparse, dense)
        return tuple(preds[name] for name in self.model.output_names)


def _describe(model: MultiTaskModel, opset: int) -> dict[str, Any]:
    schema = model.schema
    sparse = _unique([sanitize_name(n, "sparse_") for n in schema.sparse_names])
    dense = _unique([sanitize_name(n, "dense_") for n in schema.dense_names])
    outputs = _unique([sanitize_name(n) for n in model.output_names])
    types = model.task_types
    inputs = [
        {"name": s, "feature": f, "kind": "sparse", "dtype": "int64"}
        for s, f in zip(sparse, schema.sparse_names, strict=True)
    ] + [
        {"name": s, "feature": f, "kind": "dense", "dtype": "float32"}
        for s, f in zip(dense, schema.dense_names, strict=True)
    ]
    return {
        "format": FORMAT,
        "model": model.name,
        "opset": opset,
        "exporter": None,
        "batch_dim": "batch",
        "inputs": inputs,
        "outputs": [
            {
                "name": s,
                "output": o,
                "kind": "probability" if types[o] == "classification" else "value",
                "loss_head": o in model.task_names,
            }
            for s, o in zip(outputs, model.output_names, strict=True)
        ],
        "name_map": {
            **{i["name"]: i["feature"] for i in inputs},
            **{s: o for s, o in zip(outputs, model.output_names, strict=True)},
        },
    }


def _example_features(
    model: MultiTaskModel,
    description: Mapping[str, Any],
    example_batch: Batch | tuple[torch.Tensor, torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    if example_batch is None:
        n_rows = 3
        sparse = torch.zeros(n_rows, len(model.schema.sparse), dtype=torch.int64)
        dense = torch.zeros(n_rows, len(model.schema.dense), dtype=torch.float32)
    else:
        sparse, dense = example_batch[0], example_batch[1]
        # A batch of one row would let the tracer specialise the batch size.
        while sparse.shape[0] < 2:
            sparse, dense = torch.cat([sparse, sparse]), torch.cat([dense, dense])
    device = next(model.parameters()).device
    sparse = sparse.to(device=device, dtype=torch.int64)
    dense = dense.to(device=device, dtype=torch.float32)
    features: dict[str, torch.Tensor] = {}
    n_sparse = len(model.schema.sparse)
    for j, spec in enumerate(description["inputs"]):
        col = sparse[:, j] if j < n_sparse else dense[:, j - n_sparse]
        features[spec["name"]] = col.contiguous()
    return features


def export_onnx(
    model: MultiTaskModel,
    path: str | PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    example_batch: Batch | tuple[torch.Tensor, torch.Tensor] | None = None,
    exporter: Literal["auto", "dynamo", "legacy"] = "auto",
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Export ``model`` to a single ONNX file with per-feature inputs.

    Args:
        model: A multi-task model (any training mode; it is exported in eval
            mode and its mode is restored afterwards).
        path: Destination ``.onnx`` file (parent folders are created).
        opset: ONNX opset version (pinned; default 18).
        example_batch: ``(sparse, dense)`` rows used for tracing (default:
            three rows of id 0 and zeros). Values do not matter; a batch of one
            row is repeated so the batch dimension stays dynamic.
        exporter: ``auto`` tries the dynamo exporter (``torch.onnx.export``
            with ``dynamo=True``) and falls back to the legacy TorchScript
            exporter if it fails; ``dynamo``/``legacy`` force one.
        provenance: JSON-able facts stored with the description (e.g. the
            experiment and the feature encoder the model was trained with),
            read back by :func:`read_description`.

    Returns:
        The I/O description (also stored in the file's metadata under
        :data:`METADATA_KEY`): ``inputs`` (sanitised ``name``, original
        ``feature``, ``kind``, ``dtype``), ``outputs`` (sanitised ``name``,
        model ``output``, ``kind`` probability/value, ``loss_head``),
        ``name_map`` (sanitised -> original), ``opset``, ``exporter`` used,
        ``provenance``.

    Raises:
        ExportError: When no exporter succeeds.
    """
    import onnx

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    description = _describe(model, opset)
    input_names = [i["name"] for i in description["inputs"]]
    output_names = [o["name"] for o in description["outputs"]]
    was_training = model.training
    model.eval()
    # torch logs "torchvision is not installed" notices while exporting
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    previous_level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        wrapper = _ExportWrapper(
            model,
            [i["name"] for i in description["inputs"] if i["kind"] == "sparse"],
            [i["name"] for i in description["inputs"] if i["kind"] == "dense"],
        ).eval()
        features = _example_features(model, description, example_batch)
        errors: list[str] = []
        used = None
        if exporter in ("auto", "dynamo"):
            try:
                _export_dynamo(
                    wrapper, features, target, input_names, output_names, opset
                )
                used = "dynamo"
            except Exception as exc:  # any exporter failure
                errors.append(f"dynamo: {type(exc).__name__}: {exc}")
                logger.warning("dynamo ONNX export failed (%s)", errors[-1])
        if used is None and exporter in ("auto", "legacy"):
            try:
                _export_legacy(
                    wrapper, features, target, input_names, output_names, opset
                )
                used = "legacy"
            except Exception as exc:  # any exporter failure
                errors.append(f"legacy: {type(exc).__name__}: {exc}")
        if used is None:
            raise ExportError(
                f"ONNX export of {model.name} failed: " + " | ".join(errors)
            )
    finally:
        model.train(was_training)
        registry_log.setLevel(previous_level)
    description["exporter"] = used
    description["provenance"] = dict(provenance or {})
    proto = onnx.load(str(target))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(description)
    onnx.save(proto, str(target))
    logger.info(
        "exported %s to %s with the %s exporter (opset %d)",
        model.name,
        target,
        used,
        opset,
    )
    return description


def _export_dynamo(
    wrapper: nn.Module,
    features: dict[str, torch.Tensor],
    target: Path,
    input_names: list[str],
    output_names: list[str],
    opset: int,
) -> None:
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        # Every input shares the one batch dimension (intended), and torch's
        # own pytree deprecation notice is not actionable here.
        warnings.filterwarnings(
            "ignore", message=r".*axis name: batch will not be used"
        )
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        torch.onnx.export(
            wrapper,
            (),
            str(target),
            kwargs={"features": features},
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes={"features": {name: {0: batch} for name in features}},
            opset_version=opset,
            external_data=False,
            dynamo=True,
            verbose=False,
        )


def _export_legacy(
    wrapper: nn.Module,
    features: dict[str, torch.Tensor],
    target: Path,
    input_names: list[str],
    output_names: list[str],
    opset: int,
) -> None:
    axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
    # A trailing dict would be read as keyword arguments: add an empty one.
    torch.onnx.export(
        wrapper,
        (features, {}),
        str(target),
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=axes,
        opset_version=opset,
        dynamo=False,
    )


def check_parity(
    model: MultiTaskModel,
    onnx_path: str | PathLike[str],
    data: TensorTable | Batch | tuple[torch.Tensor, torch.Tensor],
    *,
    max_rows: int | None = 4096,
    batch_size: int = 65_536,
) -> float:
    """Max absolute difference between ``model.predict`` and onnxruntime.

    Args:
        model: The PyTorch model that was exported (its training mode is
            restored afterwards; predictions are taken in eval mode).
        onnx_path: The exported file.
        data: Rows to score: a table, a batch or ``(sparse, dense)``.
        max_rows: Use only the first ``max_rows`` rows (``None``: all).
        batch_size: Rows per onnxruntime call.

    Returns:
        The largest ``|torch - onnx|`` over every output and row (exports by
        :func:`export_onnx` are expected to stay <= 1e-5), or ``math.inf``
        when either side gives a non-finite value (NaN or +-inf) for any row
        of any output, so that a ``worst <= tolerance`` test fails: a NaN
        would otherwise hide every real difference. Each non-finite output is
        logged as a warning with its count on each side.
    """
    if isinstance(data, TensorTable):
        sparse, dense = data.sparse, data.dense
    else:
        sparse, dense = data[0], data[1]
    if max_rows is not None:
        sparse, dense = sparse[:max_rows], dense[:max_rows]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model.predict(sparse.to(device), dense.to(device))
    finally:
        model.train(was_training)
    got = OnnxPredictor(onnx_path).predict(
        sparse.cpu().numpy(), dense.cpu().numpy(), batch_size=batch_size
    )
    worst = 0.0
    for name in model.output_names:
        ref = expected[name].detach().cpu().double().numpy()
        out = got[name].astype(np.float64)
        bad_torch = int(np.count_nonzero(~np.isfinite(ref)))
        bad_onnx = int(np.count_nonzero(~np.isfinite(out)))
        if bad_torch or bad_onnx:
            logger.warning(
                "ONNX parity of output '%s': %d non-finite value(s) from PyTorch "
                "and %d from onnxruntime over %d row(s); parity counts as failed",
                name,
                bad_torch,
                bad_onnx,
                ref.size,
            )
            worst = math.inf
            continue
        diff = np.abs(ref - out)
        if diff.size:
            worst = max(worst, float(diff.max()))
    return worst
