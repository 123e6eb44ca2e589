"""Scoring with an exported ONNX model, without PyTorch.

An ONNX file written by :func:`mtl_reco.modeling.export.export_onnx` takes
one 1-D input per feature and gives one named output per model output
(probabilities for classification outputs, raw values for regression). It
carries its I/O description (the sanitised input names, the original feature
names, the outputs, the feature encoder it was trained with) as the ONNX
metadata entry :data:`METADATA_KEY`. This module reads that description and
scores rows with ONNX Runtime; it imports numpy, pandas, onnx and
onnxruntime only, so a scoring process never loads torch.

Example::

    predictor = OnnxPredictor("data/06_models/mmoe/model.onnx")
    scores = predictor.predict_frame(frame)  # {"ctr": (N,), "ctcvr": (N,)}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "FORMAT",
    "METADATA_KEY",
    "ModelFileError",
    "OnnxPredictor",
    "read_description",
]

METADATA_KEY = "mtl_reco.io"
"""ONNX metadata key of the model's I/O description (JSON)."""
FORMAT = "mtl_reco.onnx/1"
"""Value of the description's ``format`` entry."""


class ModelFileError(RuntimeError):
    """The model file is not a usable mtl_reco ONNX model."""


def read_description(source: str | PathLike[str] | bytes) -> dict[str, Any]:
    """The I/O description stored in an exported model (file or bytes).

    Raises:
        ModelFileError: The model was not written by
            :func:`mtl_reco.modeling.export.export_onnx`.
    """
    import onnx

    if isinstance(source, bytes | bytearray):
        proto, where = onnx.load_from_string(bytes(source)), "the given model bytes"
    else:
        proto = onnx.load(str(source), load_external_data=False)
        where = str(source)
    meta = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in meta:
        raise ModelFileError(
            f"{where} has no {METADATA_KEY!r} metadata: it was not written "
            "by mtl_reco.modeling.export.export_onnx"
        )
    description: dict[str, Any] = json.loads(meta[METADATA_KEY])
    return description


class OnnxPredictor:
    """Scores rows with an ONNX model written by ``export_onnx`` (no torch).

    Args:
        path: The ``.onnx`` file, or its bytes (as the Kedro catalog loads it).
        providers: onnxruntime execution providers (default: CPU).
        intra_op_threads: Threads onnxruntime uses inside one operator
            (``None``: onnxruntime's default, all cores).

    Attributes:
        input_names: Sanitised graph input names, in graph order.
        output_names: The model's output names (e.g. ``ctr``, ``ctcvr``,
            ``cvr``), the keys of :meth:`predict`'s result.
        description: The I/O description stored in the file.
    """

    def __init__(
        self,
        path: str | PathLike[str] | bytes,
        providers: Sequence[str] | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
            options.inter_op_num_threads = 1

        source = bytes(path) if isinstance(path, bytes | bytearray) else None
        self.path = None if source is not None else Path(path)  # type: ignore[arg-type]
        self.session = ort.InferenceSession(
            source if source is not None else str(self.path),
            sess_options=options,
            providers=list(providers or ["CPUExecutionProvider"]),
        )
        self.description = read_description(
            source if source is not None else str(self.path)
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._graph_outputs = [o.name for o in self.session.get_outputs()]
        self.output_names = [o["output"] for o in self.description["outputs"]]
        self._sparse = [i for i in self.description["inputs"] if i["kind"] == "sparse"]
        self._dense = [i for i in self.description["inputs"] if i["kind"] == "dense"]

    def predict(
        self,
        sparse: np.ndarray,
        dense: np.ndarray,
        batch_size: int = 65_536,
    ) -> dict[str, np.ndarray]:
        """Score ``N`` rows given as the model's two input matrices.

        Args:
            sparse: ``(N, n_sparse)`` integer ids in schema order.
            dense: ``(N, n_dense)`` float values in schema order.
            batch_size: Rows per onnxruntime call.

        Returns:
            ``{output name: (N,) float32}`` (probabilities / values).
        """
        sparse = np.asarray(sparse)
        dense = np.asarray(dense)
        n_rows = sparse.shape[0] if self._sparse else dense.shape[0]
        if sparse.shape[1:] != (len(self._sparse),) and self._sparse:
            raise ValueError(
                f"sparse must be (N, {len(self._sparse)}), got {sparse.shape}"
            )
        if dense.shape[1:] != (len(self._dense),) and self._dense:
            raise ValueError(
                f"dense must be (N, {len(self._dense)}), got {dense.shape}"
            )
        columns = {
            spec["name"]: sparse[:, j].astype(np.int64)
            for j, spec in enumerate(self._sparse)
        }
        columns.update(
            {
                spec["name"]: dense[:, j].astype(np.float32)
                for j, spec in enumerate(self._dense)
            }
        )
        return self._run(columns, n_rows, batch_size)

    def predict_frame(
        self, frame: pd.DataFrame, batch_size: int = 65_536
    ) -> dict[str, np.ndarray]:
        """Score a DataFrame whose columns carry the original feature names."""
        missing = [
            i["feature"]
            for i in self.description["inputs"]
            if i["feature"] not in frame.columns
        ]
        if missing:
            raise ValueError(f"frame lacks the model's input columns: {missing}")
        columns = {
            i["name"]: frame[i["feature"]].to_numpy(
                dtype=np.int64 if i["kind"] == "sparse" else np.float32
            )
            for i in self.description["inputs"]
        }
        return self._run(columns, len(frame), batch_size)

    def _run(
        self, columns: dict[str, np.ndarray], n_rows: int, batch_size: int
    ) -> dict[str, np.ndarray]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        chunks: list[list[np.ndarray]] = [[] for _ in self._graph_outputs]
        for start in range(0, n_rows, batch_size):
            feed = {
                name: np.ascontiguousarray(col[start : start + batch_size])
                for name, col in columns.items()
            }
            for k, out in enumerate(self.session.run(self._graph_outputs, feed)):
                chunks[k].append(np.asarray(out).reshape(-1))
        return {
            name: (np.concatenate(parts) if parts else np.empty(0, dtype=np.float32))
            for name, parts in zip(self.output_names, chunks, strict=True)
        }
