"""``compare``: a table and a chart over every experiment with test metrics."""

from mtl_reco.pipelines.compare.pipeline import create_pipeline

__all__ = ["create_pipeline"]
