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
        The comparison table (one row per experiment) and a bar chart of the
        test AUCs.
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
    table = comparison_table(kept)
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
