"""Side-by-side comparison of every experiment that has test metrics.

The chart is a :class:`matplotlib.figure.Figure` built without ``pyplot``, so
no backend is selected at import or call (see :mod:`mtl_reco.reporting.plots`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtl_reco.reporting.plots import ReportFigure


def comparison_table(metrics: Mapping[str, Mapping[str, Any] | None]) -> pd.DataFrame:
    """One row per experiment with test metrics; ``None`` entries are skipped.

    Columns: experiment, model, weighting, best_epoch, then
    ``<task>.auc`` / ``<task>.logloss`` / ``<task>.oracle_gap`` for every task,
    ``funnel.cvr_auc`` / ``funnel.ctcvr_auc`` when present, and ``mean.auc``.
    """
    rows = []
    for experiment, result in metrics.items():
        if not result:
            continue
        test = result.get("test", {})
        row: dict[str, Any] = {
            "experiment": experiment,
            "model": result.get("model"),
            "weighting": result.get("weighting"),
            "best_epoch": result.get("best_epoch"),
        }
        for task, values in test.get("tasks", {}).items():
            for key in ("auc", "logloss", "oracle_auc", "oracle_gap", "mse", "mae"):
                if key in values:
                    row[f"{task}.{key}"] = values[key]
        for key in ("cvr_auc", "ctcvr_auc"):
            if key in test.get("funnel", {}):
                row[f"funnel.{key}"] = test["funnel"][key]
        if "auc" in test.get("mean", {}):
            row["mean.auc"] = test["mean"]["auc"]
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["experiment", "model", "weighting", "best_epoch"])
    return pd.DataFrame(rows).sort_values("experiment").reset_index(drop=True)


def comparison_chart(table: pd.DataFrame) -> Figure:
    """Grouped bars of test AUC per task (and funnel CVR AUC) per experiment."""
    auc_cols = [
        c
        for c in table.columns
        if (c.endswith(".auc") and not c.startswith("mean.")) or c == "funnel.cvr_auc"
    ]
    fig = ReportFigure(figsize=(max(6.0, 1.4 * max(len(table), 1) + 3), 4.5))
    ax = fig.subplots()
    if table.empty or not auc_cols:
        ax.text(0.5, 0.5, "no experiment has test metrics yet", ha="center")
        ax.axis("off")
        return fig
    x = np.arange(len(table))
    width = 0.8 / len(auc_cols)
    values = table[auc_cols].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    for k, col in enumerate(auc_cols):
        bars = ax.bar(x + k * width, table[col], width, label=col)
        for bar, val in zip(bars, table[col], strict=True):
            if isinstance(val, float) and not math.isnan(val):
                ax.annotate(
                    f"{val:.3f}",
                    (bar.get_x() + bar.get_width() / 2, val),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                )
    ax.set_xticks(x + width * (len(auc_cols) - 1) / 2)
    ax.set_xticklabels(table["experiment"], rotation=20)
    if finite.size:
        low = max(0.0, float(finite.min()) - 0.05)
        ax.set_ylim(low, min(1.02, float(finite.max()) + 0.06))
    ax.set_ylabel("test AUC")
    ax.set_title("mtl_reco: test AUC per experiment")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig
