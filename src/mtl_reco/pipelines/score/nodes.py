"""Nodes of the scoring pipeline."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from mtl_reco.experiment.config import ScoreConfig
from mtl_reco.modeling.export import OnnxPredictor
from mtl_reco.processing.encoder import FeatureEncoder
from mtl_reco.sources.registry import read_source
from mtl_reco.tables import ParquetTable, StreamTable, Table

logger = logging.getLogger(__name__)


def _input_table(score: ScoreConfig) -> tuple[Table, list[str]]:
    """The rows to score and the raw columns worth keeping beside predictions."""
    if score.source == "parquet":
        path = score.options.get("path")
        if not path:
            raise ValueError("score.options.path is required for source 'parquet'")
        return ParquetTable(path), []
    raw_schema, table = read_source(score.source, score.options)
    return table, [*raw_schema.labels, *raw_schema.extras]


def score_new_data(
    feature_encoder: dict[str, Any], scoring_model: bytes, score: ScoreConfig
) -> StreamTable:
    """Encode a raw file with the training encoder and score it with ONNX.

    The input is read chunk by chunk with the same source readers as the data
    pipeline, encoded with the encoder fitted on the training split (unseen ids
    map to 0, dense values are scaled with train statistics) and scored by
    onnxruntime, so memory stays bounded for files of any size.

    Returns:
        A lazy table: ``row`` (position in the input), the kept input columns
        (labels/extras present in the input, plus ``score.keep_columns``) and
        ``p_<output>`` per model output (probabilities; values for regression).
    """
    encoder = FeatureEncoder.from_dict(feature_encoder)
    predictor = OnnxPredictor(scoring_model)
    table, raw_keep = _input_table(score)
    keep = list(
        dict.fromkeys(
            [*raw_keep, *encoder.labels, *encoder.extras, *score.keep_columns]
        )
    )
    logger.info(
        "scoring %s input with experiment %r (outputs %s)",
        score.source,
        score.experiment,
        predictor.output_names,
    )

    def produce(chunk_rows: int) -> Iterator[pd.DataFrame]:
        start = 0
        for chunk in table.iter_chunks(chunk_rows=chunk_rows):
            encoded = encoder.transform(chunk)
            preds = predictor.predict_frame(encoded, batch_size=score.batch_size)
            out = pd.DataFrame(
                {"row": np.arange(start, start + len(chunk), dtype=np.int64)}
            )
            for col in keep:
                if col in chunk.columns:
                    out[col] = chunk[col].to_numpy()
            for name, values in preds.items():
                out[f"p_{name}"] = values
            start += len(chunk)
            yield out

    return StreamTable(produce)
