"""Kedro datasets for trained models: a PyTorch state_dict and an ONNX file.

Models are persisted as ``state_dict`` (tensors only, loaded with
``weights_only=True``) next to a JSON spec that rebuilds the module through
the model registry; modules are never pickled.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import torch
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version

from mtl_reco.datasets._atomic import atomic_write


class _LocalVersionedFile(AbstractVersionedDataset[Any, Any]):
    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self.metadata = metadata

    def _load_path(self) -> Path:
        path = Path(self._get_load_path().as_posix())
        if not path.exists():
            raise DatasetError(
                f"{path} does not exist; run the pipeline that writes it"
            )
        return path

    def _save_path(self) -> Path:
        return Path(self._get_save_path().as_posix())

    def _exists(self) -> bool:
        try:
            return Path(self._get_load_path().as_posix()).exists()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}


class TorchStateDictDataset(_LocalVersionedFile):
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


class OnnxModelDataset(_LocalVersionedFile):
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
