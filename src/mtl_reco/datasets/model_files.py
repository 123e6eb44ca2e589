"""Kedro datasets for trained models: a PyTorch state_dict and an ONNX file.

Models are persisted as ``state_dict`` (tensors only, loaded with
``weights_only=True``) next to a JSON spec that rebuilds the module through
the model registry; modules are never pickled. kedro-datasets has no
tensors-only PyTorch dataset (``pickle.PickleDataset`` would unpickle
arbitrary objects) and no raw-bytes one, hence these two.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from kedro.io.core import DatasetError
from kedro_datasets._typing import JSONPreview  # kedro-viz's preview type (a str)

from mtl_reco.datasets._fs import FsspecFileDataset


class TorchStateDictDataset(FsspecFileDataset):
    """A ``state_dict`` saved with ``torch.save`` and loaded tensors-only.

    Example catalog entry::

        "{experiment}.model_state":
          type: mtl_reco.datasets.TorchStateDictDataset
          filepath: data/06_models/{experiment}/model_state.pt   # or s3://...
          versioned: true
    """

    def load(self) -> dict[str, torch.Tensor]:
        """Load the tensors (on the CPU)."""
        with self._open_load() as file:  # fsspec files seek: no copy in memory
            state: dict[str, torch.Tensor] = torch.load(
                file, map_location="cpu", weights_only=True
            )
        return state

    def save(self, data: dict[str, torch.Tensor]) -> None:
        """Save the tensors (atomically: a temporary file moved into place)."""
        if not isinstance(data, dict):
            raise DatasetError(
                f"expected a state_dict (dict of tensors), got {type(data).__name__}"
            )
        cpu = {
            k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
            for k, v in data.items()
        }
        self._write(lambda file: torch.save(cpu, file))

    def preview(self) -> JSONPreview:
        """Every tensor's dtype and shape, e.g. ``{"w": "float32[8, 16]"}``."""
        state = self.load()
        shapes = {
            name: (
                f"{str(v.dtype).removeprefix('torch.')}{list(v.shape)}"
                if isinstance(v, torch.Tensor)
                else type(v).__name__
            )
            for name, v in state.items()
        }
        return JSONPreview(json.dumps(shapes))


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
