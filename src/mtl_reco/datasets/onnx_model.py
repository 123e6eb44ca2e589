"""Kedro dataset for an exported ONNX model (raw bytes; no torch import).

kedro-datasets has no raw-bytes dataset, hence this one. It is separate from
the ``state_dict`` dataset so that scoring never loads PyTorch.
"""

from __future__ import annotations

import json
from typing import Any

from kedro.io.core import DatasetError
from kedro_datasets._typing import JSONPreview  # kedro-viz's preview type (a str)

from mtl_reco.datasets._fs import FsspecFileDataset


class OnnxModelDataset(FsspecFileDataset):
    """A serialised ONNX model (bytes) in one ``.onnx`` file.

    ``load`` returns the bytes, which ``onnxruntime.InferenceSession`` and
    :class:`mtl_reco.serving.OnnxPredictor` accept directly.
    """

    def load(self) -> bytes:
        """Read the model bytes."""
        with self._open_load() as file:
            return bytes(file.read())

    def save(self, data: bytes) -> None:
        """Write the model bytes (atomically: a temporary file moved into place)."""
        if not isinstance(data, bytes | bytearray):
            raise DatasetError(f"expected ONNX model bytes, got {type(data).__name__}")
        payload = bytes(data)
        self._write(lambda file: file.write(payload))

    def preview(self) -> JSONPreview:
        """Size, graph inputs/outputs and metadata of the model (no weights)."""
        import onnx

        model = onnx.load_model_from_string(self.load())
        summary: dict[str, Any] = {
            "bytes": model.ByteSize(),
            "inputs": [i.name for i in model.graph.input],
            "outputs": [o.name for o in model.graph.output],
            "opset": [
                f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import
            ],
            "metadata": {p.key: p.value for p in model.metadata_props},
        }
        return JSONPreview(json.dumps(summary))
