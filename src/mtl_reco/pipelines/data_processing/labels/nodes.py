"""Label-engineering nodes."""

from __future__ import annotations

from typing import Any

from mtl_reco.processing.config import LabelsConfig
from mtl_reco.processing.labels import count_labels, label_table, plan_labels
from mtl_reco.processing.validation import ensure_validated
from mtl_reco.sources.base import RawSchema
from mtl_reco.tables import Table


def engineer_labels(
    raw_events: Table,
    raw_schema: dict[str, Any],
    validation_status: dict[str, Any],
    labels: LabelsConfig,
) -> tuple[Table, dict[str, Any], dict[str, Any]]:
    """Build one label column per task; drop and count funnel-noise rows.

    Args:
        raw_events: The raw events (only processed once validated).
        raw_schema: The ``raw_schema`` record.
        validation_status: Gate written by the validation stage.
        labels: Tasks (``null`` = the source's defaults) and funnel.

    Returns:
        Lazily labelled events, the ``task_spec`` (tasks, funnel, column
        roles) and the label report (rows dropped per reason, label rates).
    """
    ensure_validated(validation_status, raw_events)
    plan = plan_labels(RawSchema.from_dict(raw_schema), labels)
    report = count_labels(raw_events, plan, labels.chunk_rows)
    return label_table(raw_events, plan), plan.to_dict(), report
