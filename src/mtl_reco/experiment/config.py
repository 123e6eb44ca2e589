"""Typed parameters of the evaluation, export, scoring and comparison nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mtl_reco.typed_config import ConfigError, StrictConfig


@dataclass(frozen=True)
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
    batch_size: int = 16384
    save_predictions: bool = True


@dataclass(frozen=True)
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
    tolerance: float = 1e-5
    batch_sizes: list[int] = field(default_factory=lambda: [1, 37, 4096])

    def validate(self) -> None:
        """Check value ranges."""
        if self.tolerance <= 0:
            raise ConfigError(f"export.tolerance must be > 0, got {self.tolerance}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(
                "export.batch_sizes must be a non-empty list of sizes >= 1"
            )


@dataclass(frozen=True)
class ScoreConfig(StrictConfig):
    """What the ``score`` pipeline scores.

    Attributes:
        experiment: Whose ONNX model scores (also selects the catalog entry
            ``scoring_model`` through ``${runtime_params:score.experiment}``).
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
    source: str = "parquet"
    options: dict[str, Any] = field(default_factory=dict)
    keep_columns: list[str] = field(default_factory=list)
    batch_size: int = 65536
    max_rejected_share: float = 0.01

    def validate(self) -> None:
        """Check value ranges."""
        if not 0.0 <= self.max_rejected_share <= 1.0:
            raise ConfigError(
                "score.max_rejected_share must be in [0, 1], got "
                f"{self.max_rejected_share}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"score.batch_size must be >= 1, got {self.batch_size}")
