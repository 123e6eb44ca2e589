"""Feature-encoding nodes: fit on train only, apply to every split."""

from __future__ import annotations

from typing import Any

from mtl_reco.processing.config import EncodingConfig
from mtl_reco.processing.encoder import (
    EncoderError,
    FeatureEncoder,
    encoder_digest,
    encoding_report,
)
from mtl_reco.tables import Table


def fit_encoder(
    train_events: Table, task_spec: dict[str, Any], encoding: EncodingConfig
) -> dict[str, Any]:
    """Learn vocabularies and dense scalings from the TRAIN split only.

    Args:
        train_events: The train split.
        task_spec: Column roles and tasks.
        encoding: Vocabulary threshold, scalings, NaN fill, embedding rule.

    Returns:
        The ``feature_encoder`` artefact (:meth:`FeatureEncoder.to_dict`).

    Raises:
        EncoderError: The train split has no rows (the message names its
            file when it is a parquet table), or a feature column is missing.
    """
    path = getattr(train_events, "path", None)
    if path is not None and getattr(train_events, "num_rows", None) == 0:
        raise EncoderError(
            f"cannot fit the feature encoder on an empty train split "
            f"({path} has 0 rows)"
        )
    encoder = FeatureEncoder.fit(
        train_events,
        sparse=task_spec["sparse"],
        dense=task_spec["dense"],
        config=encoding,
        labels=[t["name"] for t in task_spec["tasks"]],
        extras=task_spec["extras"],
    )
    return encoder.to_dict()


def apply_encoder(events: Table, feature_encoder: dict[str, Any]) -> Table:
    """Encode one split lazily (int32 ids, float32 dense and labels, extras).

    Args:
        events: A split (or any table with the feature columns).
        feature_encoder: The fitted encoder artefact.

    Returns:
        The encoded table, computed chunk by chunk while it is written.
    """
    return FeatureEncoder.from_dict(feature_encoder).transform_table(events)


def build_feature_schema(
    feature_encoder: dict[str, Any], task_spec: dict[str, Any]
) -> dict[str, Any]:
    """The ``feature_schema`` JSON (sparse cardinalities and dims, tasks, funnel).

    Args:
        feature_encoder: The fitted encoder artefact.
        task_spec: Tasks and funnel from the labels stage.

    Returns:
        :meth:`~mtl_reco.schema.FeatureSchema.to_dict` of the encoded
        tables, plus ``encoder``: the digest of the encoder that made them
        (:func:`~mtl_reco.processing.encoder.encoder_digest`), which every
        trained model records.
    """
    encoder = FeatureEncoder.from_dict(feature_encoder)
    schema = encoder.feature_schema(task_spec["tasks"], task_spec.get("funnel"))
    return {**schema.to_dict(), "encoder": encoder_digest(feature_encoder)}


def report_encoding(
    feature_encoder: dict[str, Any],
    train_events: Table,
    valid_events: Table,
    test_events: Table,
    encoded_train: Table,
    encoded_valid: Table,
    encoded_test: Table,
) -> dict[str, Any]:
    """Share of id 0 per sparse column and filled dense values, per split."""
    return encoding_report(
        FeatureEncoder.from_dict(feature_encoder),
        {"train": train_events, "valid": valid_events, "test": test_events},
        {"train": encoded_train, "valid": encoded_valid, "test": encoded_test},
    )
