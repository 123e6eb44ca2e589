"""Kedro datasets for trained models: a PyTorch state_dict and an ONNX file.

Models are persisted as ``state_dict`` (tensors only, loaded with
``weights_only=True``) next to a JSON spec that rebuilds the module through
the model registry; modules are never pickled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from kedro.io.core import DatasetError

from mtl_reco.datasets._atomic import LocalVersionedFile, atomic_write


class TorchStateDictDataset(LocalVersionedFile):
    """A ``state_dict`` saved with ``torch.save`` and loaded tensors-only.

    Example catalog entry::

        "{experiment}.model_state":
          type: mtl_reco.datasets.TorchStateDictDataset
          filepath: data/06_models/{experiment}/model_state.pt
          versioned: true
    """

    def load(self) -> dict[str, torch.Tensor]:
        """Load the tensors (on the CPU)."""
        state: dict[str, torch.Tensor] = torch.load(
            self._load_path(), map_location="cpu", weights_only=True
        )
        return state

    def save(self, data: dict[str, torch.Tensor]) -> None:
        """Save the tensors atomically."""
        if not isinstance(data, dict):
            raise DatasetError(
                f"expected a state_dict (dict of tensors), got {type(data).__name__}"
            )
        cpu = {
            k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
            for k, v in data.items()
        }
        atomic_write(self._save_path(), lambda tmp: torch.save(cpu, tmp))


class OnnxModelDataset(LocalVersionedFile):
    """A serialised ONNX model (bytes) in one ``.onnx`` file.

    ``load`` returns the bytes, which ``onnxruntime.InferenceSession`` and
    :class:`mtl_reco.modeling.export.OnnxPredictor` accept directly.
    """

    def load(self) -> bytes:
        """Read the model bytes."""
        return self._load_path().read_bytes()

    def save(self, data: bytes) -> None:
        """Write the model bytes atomically."""
        if not isinstance(data, bytes | bytearray):
            raise DatasetError(f"expected ONNX model bytes, got {type(data).__name__}")
        atomic_write(self._save_path(), lambda tmp: tmp.write_bytes(bytes(data)))

    @property
    def filepath(self) -> Path:
        """Path of the version that ``load`` reads (for logging/printing)."""
        return Path(self._get_load_path().as_posix())
