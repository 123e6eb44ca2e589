"""Typed parameters of the evaluation, export, scoring and comparison nodes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from mtl_reco.typed_config import StrictConfig


class EvaluationConfig(StrictConfig):
    """How experiments are evaluated (shared by every experiment).

    Attributes:
        group_column: Column whose values group rows for GAUC (a sparse
            feature such as the user id ``101``, or an extras column);
            ``None`` disables GAUC.
        oracle: Report the oracle AUC and the gap to it when the data carries
            true propensities (simulated data).
        batch_size: Rows per forward pass when scoring.
        save_predictions: Write per-row test predictions
            (``<experiment>.test_predictions``).
    """

    group_column: str | None = None
    oracle: bool = True
    batch_size: int = Field(default=16384, ge=1)
    save_predictions: bool = True


class ExportConfig(StrictConfig):
    """ONNX export and its parity check (shared by every experiment).

    Attributes:
        opset: ONNX opset (pinned).
        parity_rows: Test rows compared between PyTorch and onnxruntime
            (``None``: the whole test split).
        tolerance: Largest allowed absolute difference; above it the run fails.
        batch_sizes: onnxruntime batch sizes checked (dynamic batch).
    """

    opset: int = 18
    parity_rows: int | None = 20000
    tolerance: float = Field(default=1e-5, gt=0.0)
    batch_sizes: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = (
        Field(default_factory=lambda: [1, 37, 4096])
    )


class ScoreConfig(StrictConfig):
    """What the ``score`` pipeline scores.

    Attributes:
        experiment: Whose ONNX model scores (also selects the catalog entry
            ``scoring_model`` through ``${runtime_params:score.experiment}``).
        model_uri: An MLflow model URI to score with instead of the
            experiment's local model (``models:/mtl_reco-ple@champion``,
            ``models:/mtl_reco-mmoe/3``); ``experiment`` then names only the
            output folder.
        source: Source reader for the input file (``ali_ccp``,
            ``census_income``, ``aliexpress``, ``ali_ccp_raw``, ``parquet``
            for a raw-events parquet file, ``simulated``).
        options: That source's options (e.g. ``{path: new_rows.csv}``).
        keep_columns: Input columns copied next to the predictions (labels and
            extras present in the input are always kept).
        batch_size: Rows per onnxruntime call.
        max_rejected_share: Largest share of input rows that may fail a hard
            row check of the validation suite (those rows are not scored);
            above it the run fails and no scores are written. The default
            1 % tolerates a few corrupt records in a large batch while an
            upstream break (a broken export, a changed column) stops the run.
    """

    experiment: str = "mmoe"
    model_uri: str | None = None
    source: str = "parquet"
    options: dict[str, Any] = Field(default_factory=dict)
    keep_columns: list[str] = Field(default_factory=list)
    batch_size: int = Field(default=65536, ge=1)
    max_rejected_share: float = Field(default=0.01, ge=0.0, le=1.0)
