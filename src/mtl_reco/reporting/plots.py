"""Figures for one experiment: learning curves, task weights, ROC curves.

Each function builds a :class:`matplotlib.figure.Figure` directly, never
through ``pyplot``: no backend is selected or switched, so importing this
module leaves a notebook's inline backend alone, and a headless run needs no
GUI. Saving (``MatplotlibDataset``, MLflow ``log_figure``) renders through
``Figure.savefig``, which picks the Agg canvas for PNG by itself. In Jupyter a
figure shows as a PNG with ``display(fig)`` (or as a cell's last value), with
or without ``pyplot`` imported (:class:`ReportFigure`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


class ReportFigure(Figure):
    """A plain :class:`~matplotlib.figure.Figure` that IPython can show as a PNG.

    A figure made without ``pyplot`` has no display formatter until some
    ``pyplot`` code loads the notebook's inline backend; ``_repr_png_`` lets
    ``display(fig)`` render it in any case, through the same ``savefig`` the
    catalog uses. Where the inline backend is loaded, its formatter is used.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def _epochs(history: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(history.get("epochs") or history.get("history") or [])


def learning_curves(
    history: Mapping[str, Any], tasks: Sequence[str], title: str
) -> Figure:
    """Per-task training loss and validation loss/AUC over epochs.

    Args:
        history: The ``training_history`` artefact (``epochs`` records).
        tasks: Loss heads to draw.
        title: Figure title (the experiment).
    """
    records = _epochs(history)
    epochs = [r["epoch"] for r in records]
    fig = ReportFigure(figsize=(11, 4))
    ax_loss, ax_auc = fig.subplots(1, 2)
    for task in tasks:
        train = [r.get("train_loss", {}).get(task, np.nan) for r in records]
        valid = [r.get("valid", {}).get(f"{task}.loss", np.nan) for r in records]
        auc = [r.get("valid", {}).get(f"{task}.auc", np.nan) for r in records]
        (line,) = ax_loss.plot(epochs, train, marker="o", label=f"{task} train")
        ax_loss.plot(
            epochs,
            valid,
            marker="x",
            ls="--",
            color=line.get_color(),
            label=f"{task} valid",
        )
        ax_auc.plot(epochs, auc, marker="o", color=line.get_color(), label=task)
    best = history.get("best_epoch")
    for ax in (ax_loss, ax_auc):
        if best is not None:
            ax.axvline(best, color="grey", lw=0.8, ls=":", label="best epoch")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_loss.set_ylabel("loss")
    ax_auc.set_ylabel("validation AUC")
    fig.suptitle(f"{title}: learning curves")
    fig.tight_layout()
    return fig


def task_weights(
    history: Mapping[str, Any], tasks: Sequence[str], title: str
) -> Figure:
    """Mean task weight per epoch (what the loss-weighting strategy chose)."""
    records = _epochs(history)
    epochs = [r["epoch"] for r in records]
    fig = ReportFigure(figsize=(6, 4))
    ax = fig.subplots()
    for task in tasks:
        ax.plot(
            epochs,
            [r.get("weights", {}).get(task, np.nan) for r in records],
            marker="o",
            label=task,
        )
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("task weight")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}: task weights")
    fig.tight_layout()
    return fig


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False/true positive rates of every threshold (empty when one class)."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    pos = float(y.sum())
    neg = float(y.size - pos)
    if pos == 0 or neg == 0:
        return np.empty(0), np.empty(0)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[np.diff(s_sorted) != 0, True]
    tps = np.cumsum(y_sorted)[last_of_tie]
    fps = np.cumsum(1.0 - y_sorted)[last_of_tie]
    return np.r_[0.0, fps / neg], np.r_[0.0, tps / pos]


def roc_curves(
    labels: Mapping[str, np.ndarray],
    scores: Mapping[str, np.ndarray],
    aucs: Mapping[str, float],
    title: str,
    masks: Mapping[str, np.ndarray] | None = None,
) -> Figure:
    """ROC curve per task on the test split (optionally on a row subset).

    Args:
        labels: Label array per curve.
        scores: Score array per curve.
        aucs: AUC shown in the legend per curve.
        title: Figure title.
        masks: Optional boolean row mask per curve (e.g. clicked rows for CVR).
    """
    fig = ReportFigure(figsize=(5, 5))
    ax = fig.subplots()
    for name in labels:
        y, s = np.asarray(labels[name]), np.asarray(scores[name])
        if masks is not None and name in masks:
            y, s = y[masks[name]], s[masks[name]]
        fpr, tpr = roc_points(y, s)
        if fpr.size:
            ax.plot(fpr, tpr, label=f"{name} (AUC {aucs.get(name, np.nan):.4f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{title}: test ROC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
