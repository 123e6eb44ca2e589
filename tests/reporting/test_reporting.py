import numpy as np
import pytest
from sklearn.metrics import auc, roc_curve

from mtl_reco.reporting.compare import comparison_chart, comparison_table
from mtl_reco.reporting.plots import learning_curves, roc_points, task_weights


def test_roc_points_match_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500) + 0.3 * y, 1)  # many ties
    fpr, tpr = roc_points(y, s)
    ref_fpr, ref_tpr, _ = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    assert auc(fpr, tpr) == pytest.approx(auc(ref_fpr, ref_tpr))
    assert roc_points(np.zeros(5), np.arange(5))[0].size == 0  # one class


def _metrics(ctr_auc):
    return {
        "model": "mmoe",
        "weighting": "fixed",
        "best_epoch": 1,
        "test": {
            "tasks": {"ctr": {"auc": ctr_auc, "logloss": 0.3, "oracle_gap": 0.1}},
            "funnel": {"cvr_auc": 0.6, "ctcvr_auc": 0.8},
            "mean": {"auc": ctr_auc},
        },
    }


def test_comparison_table_leaves_out_untrained_experiments():
    table = comparison_table(
        {"mmoe": _metrics(0.7), "ple": None, "aitm": _metrics(0.8)}
    )
    assert table["experiment"].tolist() == ["aitm", "mmoe"]
    assert table.loc[0, "ctr.auc"] == 0.8
    assert {"funnel.cvr_auc", "funnel.ctcvr_auc", "ctr.oracle_gap", "mean.auc"} <= set(
        table.columns
    )
    assert comparison_chart(table).axes  # a figure with a bar chart
    empty = comparison_table({"ple": None})
    assert empty.empty and "experiment" in empty.columns
    comparison_chart(empty)  # says "no experiment has test metrics yet"


def test_history_figures_draw_every_task():
    history = {
        "best_epoch": 1,
        "epochs": [
            {
                "epoch": e,
                "train_loss": {"ctr": 0.5 / e, "ctcvr": 0.1 / e},
                "weights": {"ctr": 1.0, "ctcvr": 1.0 + e},
                "valid": {
                    "ctr.auc": 0.7,
                    "ctcvr.auc": 0.8,
                    "ctr.loss": 0.4,
                    "ctcvr.loss": 0.1,
                },
            }
            for e in (1, 2)
        ],
    }
    fig = learning_curves(history, ["ctr", "ctcvr"], "t")
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert {"ctr train", "ctr valid", "ctcvr train", "ctcvr valid"} <= set(labels)
    weights = task_weights(history, ["ctr", "ctcvr"], "t")
    ctcvr = next(line for line in weights.axes[0].lines if line.get_label() == "ctcvr")
    assert list(ctcvr.get_ydata()) == [2.0, 3.0]
