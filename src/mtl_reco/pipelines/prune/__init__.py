"""``prune``: delete old artefact versions and old failed runs now."""

from mtl_reco.pipelines.prune.pipeline import create_pipeline

__all__ = ["create_pipeline"]
