import io
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import auc, roc_curve

from mtl_reco.reporting.compare import comparison_chart, comparison_table
from mtl_reco.reporting.plots import (
    learning_curves,
    roc_curves,
    roc_points,
    task_weights,
)


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


def _history():
    return {
        "best_epoch": 1,
        "epochs": [
            {
                "epoch": e,
                "train_loss": {"ctr": 0.5 / e},
                "weights": {"ctr": 1.0},
                "valid": {"ctr.auc": 0.7, "ctr.loss": 0.4},
            }
            for e in (1, 2)
        ],
    }


def _all_figures():
    rng = np.random.default_rng(1)
    y, s = rng.integers(0, 2, 50), rng.random(50)
    return {
        "learning_curves.png": learning_curves(_history(), ["ctr"], "t"),
        "task_weights.png": task_weights(_history(), ["ctr"], "t"),
        "roc_test.png": roc_curves({"ctr": y}, {"ctr": s}, {"ctr": 0.5}, "t"),
        "comparison.png": comparison_chart(comparison_table({"m": _metrics(0.7)})),
    }


PNG = b"\x89PNG\r\n\x1a\n"


def test_importing_reporting_selects_no_backend():
    """A notebook's inline backend survives the import (no ``matplotlib.use``)."""
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "import mtl_reco.reporting.plots, mtl_reco.reporting.compare\n"
        "from mtl_reco.reporting.plots import task_weights\n"
        "task_weights({'epochs': [{'epoch': 1, 'weights': {'a': 1.0}}]}, ['a'], 't')\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr


def test_figures_are_plain_figures_not_registered_with_pyplot():
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    figures = _all_figures()
    assert set(plt.get_fignums()) == before  # nothing to close, no GUI window
    for fig in figures.values():
        assert isinstance(fig, Figure)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        assert buffer.getvalue().startswith(PNG)
        assert fig._repr_png_().startswith(PNG)  # what display(fig) shows in Jupyter


def test_figures_save_through_the_matplotlib_dataset(tmp_path):
    from kedro_datasets.matplotlib import MatplotlibDataset

    figures = _all_figures()
    MatplotlibDataset(filepath=str(tmp_path / "plots")).save(figures)
    MatplotlibDataset(filepath=str(tmp_path / "chart.png")).save(
        figures["comparison.png"]
    )
    for name in figures:
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG)
    assert (tmp_path / "chart.png").read_bytes().startswith(PNG)


def test_figures_log_to_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment(
        "figures", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    run = client.create_run(experiment)
    for name, fig in _all_figures().items():
        client.log_figure(run.info.run_id, fig, f"plots/{name}")
    client.set_terminated(run.info.run_id)
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert logged == {f"plots/{name}" for name in _all_figures()}
    plots = tmp_path / "artifacts" / run.info.run_id / "artifacts" / "plots"
    assert (plots / "roc_test.png").read_bytes().startswith(PNG)
