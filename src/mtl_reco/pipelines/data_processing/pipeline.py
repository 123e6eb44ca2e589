"""Sum of the data-processing stages, in the ``data_processing`` namespace."""

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

NAMESPACE = "data_processing"
"""Namespace of the data-processing nodes (one collapsible group in kedro-viz)."""


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Ingestion, validation, labels, split and encoding, tagged ``data_processing``.

    The nodes are namespaced (``data_processing.ingest_source``, ...: use these
    names with ``--nodes``/``--from-nodes``) but their datasets and parameters
    are not: ``raw_events``, ``feature_schema`` and ``params:sources`` keep
    their catalog and parameter names (``prefix_datasets_with_namespace=False``).
    """
    stages = ingestion() + validation() + labels() + split() + encoding()
    return Pipeline(
        stages,
        tags="data_processing",
        namespace=NAMESPACE,
        prefix_datasets_with_namespace=False,
    )
