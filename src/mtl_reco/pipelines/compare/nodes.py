"""Nodes of the comparison pipeline."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from mtl_reco.reporting.compare import comparison_chart, comparison_table

logger = logging.getLogger(__name__)


def compare_experiments(
    dataset: str, **test_metrics: dict[str, Any] | None
) -> tuple[pd.DataFrame, Figure]:
    """Tabulate and chart the test metrics of every experiment trained on ``dataset``.

    Args:
        dataset: The ``dataset`` parameter: experiments whose latest metrics
            were computed on another dataset are left out (one data folder
            can hold experiments of several datasets).
        **test_metrics: ``<experiment>.test_metrics`` per experiment; an
            experiment that was never trained loads as ``None`` and is left out.

    Returns:
        The comparison table (one row per experiment, best first) and a bar
        chart of the test AUCs. Experiments are ranked by their validation
        mean AUC (``valid.mean.auc``; column ``rank``, 1 = best), never by a
        test metric, so the test columns stay an unbiased report; the MLflow
        hook moves the ``champion`` alias to the experiment ranked 1.
    """
    other = sorted(
        name
        for name, value in test_metrics.items()
        if value and value.get("dataset", dataset) != dataset
    )
    if other:
        logger.info(
            "trained on another dataset than %r (left out of the comparison): %s",
            dataset,
            ", ".join(f"{n} ({(test_metrics[n] or {}).get('dataset')})" for n in other),
        )
    kept = {k: v for k, v in test_metrics.items() if k not in other}
    table = rank_by_validation(comparison_table(kept), kept)
    missing = sorted(name for name, value in test_metrics.items() if not value)
    if missing:
        logger.info(
            "not trained yet (left out of the comparison): %s", ", ".join(missing)
        )
    if not table.empty:
        with pd.option_context("display.width", 160, "display.max_columns", 30):
            logger.info(
                "model comparison (test split):\n%s",
                table.round(4).to_string(index=False),
            )
    return table, comparison_chart(table)


RANK_BY = "valid.mean.auc"


def rank_by_validation(
    table: pd.DataFrame, metrics: dict[str, dict[str, Any] | None]
) -> pd.DataFrame:
    """Add ``valid.mean.auc`` and ``rank`` (1 = best on it) and sort by rank.

    An experiment without a validation AUC gets no rank and comes last.
    """
    if table.empty:
        return table.assign(
            **{RANK_BY: pd.Series(dtype=float), "rank": pd.Series(dtype="Int64")}
        )
    valid = {
        name: (((value or {}).get("valid") or {}).get("mean") or {}).get("auc")
        for name, value in metrics.items()
    }
    table = table.copy()
    table[RANK_BY] = table["experiment"].map(valid).astype(float)
    table["rank"] = table[RANK_BY].rank(ascending=False, method="first").astype("Int64")
    columns = ["rank", *[c for c in table.columns if c != "rank"]]
    return table.sort_values(["rank", "experiment"], na_position="last").reset_index(
        drop=True
    )[columns]
