"""Nodes of the scoring pipeline."""

from __future__ import annotations

import logging
from typing import Any

from mtl_reco.experiment.config import ScoreConfig
from mtl_reco.processing.config import ValidationConfig
from mtl_reco.processing.encoder import FeatureEncoder, model_encoder_mismatch
from mtl_reco.processing.scoring import (
    ScoringError,
    ScoringStats,
    open_scoring_input,
    prepare_scoring,
    score_table,
    scoring_report,
    summary_line,
)
from mtl_reco.serving import OnnxPredictor
from mtl_reco.tables import StreamTable, Table, count_rows

logger = logging.getLogger(__name__)


def score_new_data(
    feature_encoder: dict[str, Any],
    scoring_model: bytes,
    raw_schema: dict[str, Any],
    score: ScoreConfig,
    validation: ValidationConfig,
) -> tuple[StreamTable, ScoringStats]:
    """Validate a raw file like the training data, encode it and score it (ONNX).

    The input is read chunk by chunk with the same source readers as the data
    pipeline (``score.source=parquet``: a raw-events parquet file checked
    against the training data's ``raw_schema``) and checked with the training
    validation suite (see :mod:`mtl_reco.processing.scoring`): an input with
    no rows, a missing feature column or a non-numeric dense column fails
    here, before anything is scored; rows a hard row check flags are left
    out. The kept rows are encoded with the encoder fitted on the training
    split and scored by onnxruntime, so memory stays bounded.

    Args:
        feature_encoder: The fitted encoder (JSON).
        scoring_model: The experiment's ONNX model (bytes); it names the
            encoder it was trained with, and never scores through another.
        raw_schema: Raw schema of the training data (``raw_schema`` record).
        score: What to score and the allowed share of rejected rows.
        validation: Rule severities of the training validation.

    Returns:
        A lazy table: ``row`` (position in the input), the kept input columns
        (labels/extras present in the input, plus ``score.keep_columns``) and
        ``p_<output>`` per model output (probabilities; values for
        regression), rejected rows absent; and the statistics it fills while
        it is written (the table's last chunk raises when too many rows were
        rejected, so no scores are written then).

    Raises:
        ScoringError: No rows, a missing feature column or a failed hard
            schema check; the message names the file and the column.
    """
    predictor = OnnxPredictor(scoring_model)
    provenance = predictor.description.get("provenance") or {}
    trained_as = provenance.get("experiment")
    if trained_as and trained_as != score.experiment:
        source = score.model_uri or "the local model"
        raise ScoringError(
            f"{source} is experiment {trained_as!r}, but score.experiment is "
            f"{score.experiment!r}: add score.experiment={trained_as} (it names "
            "the output folder and the report)"
        )
    mismatch = model_encoder_mismatch(provenance, feature_encoder)
    if mismatch:
        raise ScoringError(f"experiment {score.experiment!r}: {mismatch}")
    encoder = FeatureEncoder.from_dict(feature_encoder)
    scoring = open_scoring_input(score.source, score.options, raw_schema)
    validator, stats = prepare_scoring(
        scoring,
        encoder,
        validation,
        experiment=score.experiment,
        max_rejected_share=score.max_rejected_share,
    )
    keep = list(
        dict.fromkeys(
            [*scoring.keep, *encoder.labels, *encoder.extras, *score.keep_columns]
        )
    )
    logger.info(
        "scoring %s input%s with experiment %r (outputs %s)",
        score.source,
        scoring.where,
        score.experiment,
        predictor.output_names,
    )
    table = score_table(
        scoring,
        encoder,
        lambda frame: predictor.predict_frame(frame, batch_size=score.batch_size),
        validator,
        stats,
        keep,
    )
    return table, stats


def report_scoring(
    scored_predictions: Table, scoring_stats: ScoringStats
) -> dict[str, Any]:
    """Turn the statistics of the written scores into the scoring report.

    Takes ``scored_predictions`` as an input so that it runs only after the
    lazy scores were written (the statistics are complete then).

    Args:
        scored_predictions: The written scores (only their row count is read).
        scoring_stats: Statistics filled while the scores were written.

    Returns:
        The ``scoring_report`` (see
        :func:`mtl_reco.processing.scoring.scoring_report`).

    Raises:
        ScoringError: Incomplete statistics, a row count that disagrees with
            the written scores, or too many rejected rows.
    """
    report = scoring_report(scoring_stats, rows_written=count_rows(scored_predictions))
    for entry in report["checks"]:
        if entry["severity"] == "soft" and entry["unexpected_count"]:
            logger.warning(
                "scoring input (soft, rows kept): %s %s on %s: %d rows",
                entry["rule"],
                entry["expectation"],
                entry["column"] or entry["columns"],
                entry["unexpected_count"],
            )
    logger.info(summary_line(report))
    return report
