"""``score``: the fitted encoder + one experiment's ONNX model on a new raw file."""

from mtl_reco.pipelines.score.pipeline import create_pipeline

__all__ = ["create_pipeline"]
