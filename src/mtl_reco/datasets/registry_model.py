"""The scoring model: a local ONNX file, or a model in the MLflow Model Registry."""

from __future__ import annotations

from typing import Any

from kedro.io.core import DatasetError

from mtl_reco.datasets.onnx_model import OnnxModelDataset


class ScoringModelDataset(OnnxModelDataset):
    """ONNX model bytes from ``model_uri`` when it is set, else from ``filepath``.

    ``model_uri`` is any URI ``mlflow.onnx.load_model`` takes, e.g.
    ``models:/mtl_reco-ple@champion`` or ``models:/mtl_reco-mmoe/3``, read
    from the tracking store kedro-mlflow set up (``mlflow.yml``). Read-only
    when a URI is given.

    Example catalog entry::

        scoring_model:
          type: mtl_reco.datasets.ScoringModelDataset
          filepath: data/06_models/mmoe/model.onnx
          model_uri: ${runtime_params:score.model_uri,null}
          versioned: true
    """

    def __init__(self, *, model_uri: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._model_uri = model_uri or None

    def load(self) -> bytes:
        """The model's bytes (the registered model's when ``model_uri`` is set)."""
        if self._model_uri is None:
            return super().load()
        import mlflow.onnx

        try:
            model = mlflow.onnx.load_model(self._model_uri)
        except Exception as exc:
            message = " ".join(str(exc).split())[:300]
            raise DatasetError(
                f"cannot load model {self._model_uri!r} from MLflow "
                f"({mlflow.get_tracking_uri()}): {message}"
            ) from exc
        return bytes(model.SerializeToString())

    def save(self, data: bytes) -> None:
        """Write the local file (never the registry)."""
        if self._model_uri is not None:
            raise DatasetError(f"{self._model_uri!r} is read-only here")
        super().save(data)

    def _exists(self) -> bool:
        return self._model_uri is not None or super()._exists()

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "model_uri": self._model_uri}
