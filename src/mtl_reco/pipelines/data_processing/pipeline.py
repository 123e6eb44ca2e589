"""Sum of the data-processing stages."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline

from mtl_reco.pipelines.data_processing.encoding.pipeline import (
    create_pipeline as encoding,
)
from mtl_reco.pipelines.data_processing.ingestion.pipeline import (
    create_pipeline as ingestion,
)
from mtl_reco.pipelines.data_processing.labels.pipeline import (
    create_pipeline as labels,
)
from mtl_reco.pipelines.data_processing.split.pipeline import create_pipeline as split
from mtl_reco.pipelines.data_processing.validation.pipeline import (
    create_pipeline as validation,
)


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Ingestion, validation, labels, split and encoding, tagged ``data_processing``."""
    stages = ingestion() + validation() + labels() + split() + encoding()
    return Pipeline(stages, tags="data_processing")
