"""Kedro dataset for a trained model's PyTorch ``state_dict``.

Models are persisted as ``state_dict`` (tensors only, loaded with
``weights_only=True``) next to a JSON spec that rebuilds the module through
the model registry; modules are never pickled. kedro-datasets has no
tensors-only PyTorch dataset (``pickle.PickleDataset`` would unpickle
arbitrary objects), hence this one.
"""

from __future__ import annotations

import json

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
