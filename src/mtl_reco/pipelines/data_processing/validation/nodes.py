"""Validation nodes: Great Expectations suite per source, then the gate."""

from __future__ import annotations

import logging
from typing import Any

from mtl_reco.processing.config import ValidationConfig
from mtl_reco.processing.validation import (
    raise_for_failures,
    render_summary,
    table_fingerprint,
    validate_table,
)
from mtl_reco.sources.base import RawSchema
from mtl_reco.tables import Table

logger = logging.getLogger(__name__)


def validate_raw_events(
    raw_events: Table, raw_schema: dict[str, Any], validation: ValidationConfig
) -> tuple[dict[str, Any], str]:
    """Run the source's expectation suite over the raw events, chunk by chunk.

    Never raises for failed checks, so the report is written either way;
    :func:`check_validation` decides whether the run goes on.

    Args:
        raw_events: The raw events.
        raw_schema: The ``raw_schema`` record written by ingestion (its
            ``inputs`` are named in messages; its ``input_splits`` let the
            ``row_count`` rule name a split's file that has no rows).
        validation: Rule severities and chunking.

    Returns:
        The validation report (JSON) and its markdown summary.
    """
    schema = RawSchema.from_dict(raw_schema)
    report = validate_table(
        raw_events,
        schema,
        validation,
        inputs=raw_schema.get("inputs") or (),
        input_splits=raw_schema.get("input_splits") or {},
    )
    report["fingerprint"] = table_fingerprint(raw_events, report["rows"])
    return report, render_summary(report)


def check_validation(validation_report: dict[str, Any]) -> dict[str, Any]:
    """Stop the run when a hard check failed; otherwise pass the gate.

    Args:
        validation_report: Output of :func:`validate_raw_events`.

    Returns:
        The ``validation_status`` record the labels stage requires.

    Raises:
        DataValidationError: Names each failed hard expectation, its column
            and how many rows broke it.
    """
    raise_for_failures(validation_report)
    soft = [
        c["message"]
        for c in validation_report["checks"]
        if not c["success"] and c["severity"] == "soft"
    ]
    return {
        "passed": True,
        "source": validation_report["source"],
        "rows": validation_report["rows"],
        "fingerprint": validation_report.get("fingerprint"),
        "soft_failures": soft,
    }
