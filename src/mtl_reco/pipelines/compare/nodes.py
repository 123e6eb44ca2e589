"""Nodes of the comparison pipeline."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from mtl_reco.reporting.compare import comparison_chart, comparison_table

logger = logging.getLogger(__name__)


def compare_experiments(
    **test_metrics: dict[str, Any] | None,
) -> tuple[pd.DataFrame, Figure]:
    """Tabulate and chart the test metrics of every trained experiment.

    Args:
        **test_metrics: ``<experiment>.test_metrics`` per experiment; an
            experiment that was never trained loads as ``None`` and is left out.

    Returns:
        The comparison table (one row per experiment) and a bar chart of the
        test AUCs.
    """
    table = comparison_table(test_metrics)
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
