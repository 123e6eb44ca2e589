"""`kedro run --pipelines=train_<experiment> --env test` end to end (CLI, subprocess).

Each run happens in a temporary copy of the project (conf + pyproject; the
package itself is the installed one), on the simulator's tiny test settings.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl_reco.experiment import experiment_names

from .conftest import copy_project, project_params

KEDRO = str(Path(sys.executable).with_name("kedro"))
pytestmark = pytest.mark.slow
TEST_PARAMS = project_params("test")
EXPERIMENTS = experiment_names(TEST_PARAMS)


def kedro(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(name, None)  # the project's own sqlite store
    proc = subprocess.run(
        [KEDRO, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def latest(project: Path, rel: str) -> Path:
    """The newest version of a versioned artefact."""
    versions = sorted((project / rel).iterdir())
    assert versions, f"no version of {rel}"
    return versions[-1] / Path(rel).name


def run_notebook(project: Path):
    """Execute notebooks/compare_experiments.ipynb headless; return the notebook.

    No matplotlib backend is set here (``MPLBACKEND`` is left to the kernel, as
    in Jupyter), so the charts must show the way they do for a person.
    """
    import nbformat
    from nbclient import NotebookClient

    source = (
        Path(__file__).resolve().parents[2] / "notebooks" / "compare_experiments.ipynb"
    )
    (project / "notebooks").mkdir(exist_ok=True)
    nb = nbformat.read(source, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(project / "notebooks")}},
    )
    client.execute()  # raises CellExecutionError on any failing cell
    return nb


def notebook_text(nb) -> str:
    return "\n".join(
        out.get("text", "") or out.get("data", {}).get("text/plain", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )


def assert_chart_cells_show_images(nb) -> None:
    """Every cell tagged ``chart`` displays its figures as PNG (display_data)."""
    charts = [c for c in nb.cells if "chart" in c.metadata.get("tags", [])]
    assert len(charts) >= 2, "the notebook's chart cells are tagged 'chart'"
    for cell in charts:
        images = [
            out
            for out in cell.outputs
            if out.output_type == "display_data" and "image/png" in out.get("data", {})
        ]
        assert images, f"chart cell shows no image: {cell.source!r} -> {cell.outputs}"
        for out in images:
            assert base64.b64decode(out.data["image/png"]).startswith(b"\x89PNG")
        # one image per display(...) call: learning curves + task weights
        assert len(images) == cell.source.count("display(")


def mlflow_run(project: Path, exp: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mtl_reco_test")
    runs = client.search_runs([experiment.experiment_id], f"tags.experiment = '{exp}'")
    assert len(runs) == 1
    run = runs[0]
    artefacts = {
        a.path
        for folder in ("export", "plots", "metrics", "data")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    return run, artefacts


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_train_pipeline_produces_metrics_plots_onnx_and_an_mlflow_run(tmp_path, exp):
    project = copy_project(tmp_path / "project")
    proc = kedro(project, "run", f"--pipelines=train_{exp}", "--env", "test")
    log = proc.stdout + proc.stderr
    # the run says where things are
    assert f"experiment '{exp}' finished; MLflow run" in log
    assert "test metrics:" in log and "ONNX model:" in log

    metrics = json.loads(
        latest(project, f"data/08_reporting/{exp}/test_metrics.json").read_text()
    )
    assert metrics["model"] == TEST_PARAMS[exp]["model"]["name"]
    for split in ("valid", "test"):
        tasks = metrics[split]["tasks"]
        assert set(tasks) == {"ctr", "ctcvr"}
        for values in tasks.values():
            assert 0.0 <= values["auc"] <= 1.0 and values["logloss"] > 0
            assert 0.5 < values["oracle_auc"] <= 1.0  # simulated data: truth known
    assert metrics["test"]["tasks"]["ctr"]["auc"] > 0.6  # tiny data, still learnt
    assert {"cvr_auc", "ctcvr_auc"} <= set(metrics["test"]["funnel"])

    plots = sorted(
        p.name for p in latest(project, f"data/08_reporting/{exp}/plots").iterdir()
    )
    assert plots == ["learning_curves.png", "roc_test.png", "task_weights.png"]
    assert latest(project, f"data/06_models/{exp}/model.onnx").stat().st_size > 1000
    parity = json.loads(
        latest(project, f"data/06_models/{exp}/onnx_parity.json").read_text()
    )
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-5

    run, artefacts = mlflow_run(project, exp)
    assert run.info.status == "FINISHED" and run.info.run_name == exp
    assert run.data.tags["model"] == metrics["model"]
    assert run.data.params["model.name"] == metrics["model"]
    assert run.data.params["trainer.epochs"] == "2"
    assert 0.0 <= run.data.metrics["test.ctr.auc"] <= 1.0
    assert "train_loss.ctr" in run.data.metrics and "valid.mean.auc" in run.data.metrics
    assert {"export/onnx_parity.json", "plots/roc_test.png"} <= artefacts
    assert "data/validation_report.json" in artefacts
    # the ONNX model is an MLflow model of this run, registered as version 1
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    versions = client.search_model_versions(f"name = 'mtl_reco-{exp}'")
    assert len(versions) == 1, [
        (v.version, v.run_id, v.source, v.creation_timestamp, dict(v.tags))
        for v in versions
    ]
    (version,) = versions
    assert int(version.version) == 1 and version.run_id == run.info.run_id
    assert version.source.startswith("models:/m-")  # a logged model, not a file
    model = client.get_logged_model(version.source.removeprefix("models:/"))
    assert model.source_run_id == run.info.run_id and model.name == "model"


def test_an_experiment_added_in_yaml_only_trains(tmp_path):
    """One block, in conf/base or in the run's environment, is a whole experiment."""
    project = copy_project(tmp_path / "project")
    base = project / "conf" / "base" / "parameters_training.yml"
    base.write_text(
        base.read_text()
        + "\nmmoe_dwa:\n"
        + "  model: {name: mmoe, params: {n_experts: 3, expert_dims: [16]}}\n"
        + "  weighting: {name: dwa}\n"
    )
    (project / "conf" / "test" / "parameters_more.yml").write_text(
        "ple_pcgrad:\n"
        "  model: {name: ple, params: {n_levels: 1, expert_dims: [16]}}\n"
        "  weighting: {name: pcgrad}\n"
    )
    kedro(
        project,
        "run",
        "--pipelines=train_mmoe_dwa,train_ple_pcgrad",
        "--env",
        "test",
        "--params",
        "mmoe_dwa.model.params.n_experts=2",
    )
    for exp, model, weighting in (
        ("mmoe_dwa", "mmoe", "dwa"),
        ("ple_pcgrad", "ple", "pcgrad"),
    ):
        spec = json.loads(
            latest(project, f"data/06_models/{exp}/model_spec.json").read_text()
        )
        assert spec["model"] == model and spec["weighting"]["name"] == weighting
        metrics = json.loads(
            latest(project, f"data/08_reporting/{exp}/test_metrics.json").read_text()
        )
        assert metrics["model"] == model and metrics["weighting"] == weighting
        assert latest(project, f"data/06_models/{exp}/model.onnx").is_file()
    assert spec["config"]["n_levels"] == 1
    dwa = json.loads(
        latest(project, "data/06_models/mmoe_dwa/model_spec.json").read_text()
    )
    assert dwa["config"]["n_experts"] == 2  # --params applies to a YAML-only block
    # without a session (kedro registry list): base + local, not test
    (project / "conf" / "local" / "parameters_mine.yml").write_text(
        "aitm_uwl:\n  model: {name: aitm}\n  weighting: {name: uwl}\n"
    )
    listed = kedro(project, "registry", "list").stdout
    assert "train_aitm_uwl" in listed and "train_mmoe_dwa" in listed
    assert "train_ple_pcgrad" not in listed


def test_score_reproduces_test_predictions_compare_and_notebook(tmp_path):
    project = copy_project(tmp_path / "project")
    kedro(project, "run", "--pipelines=train_mmoe", "--env", "test")
    # score the raw (un-encoded) test split with the fitted encoder + ONNX model
    kedro(
        project,
        "run",
        "--pipelines=score",
        "--env",
        "test",
        "--params",
        "score.experiment=mmoe,score.source=parquet,score.options.path=data/03_primary/test.parquet",
    )
    scored = pd.read_parquet(
        latest(project, "data/07_model_output/mmoe/scores.parquet")
    )
    reference = pd.read_parquet(
        latest(project, "data/07_model_output/mmoe/test_predictions.parquet")
    )
    assert len(scored) == len(reference) > 100
    for output in ("ctr", "ctcvr"):
        np.testing.assert_allclose(
            scored[f"p_{output}"], reference[f"p_{output}"], atol=1e-5, rtol=0
        )
    np.testing.assert_array_equal(scored["ctr"], reference["label_ctr"])

    proc = kedro(project, "run", "--pipelines=compare", "--env", "test")
    table = pd.read_csv(latest(project, "data/08_reporting/model_comparison.csv"))
    assert table["experiment"].tolist() == ["mmoe"]
    assert "not trained yet" in proc.stdout + proc.stderr
    assert (
        latest(project, "data/08_reporting/model_comparison.png").stat().st_size > 1000
    )

    nb = run_notebook(project)
    assert_chart_cells_show_images(nb)
    text = notebook_text(nb)
    assert "mmoe: best epoch" in text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("mmoe.model.params.n_expert=4", "did you mean 'n_experts'"),
        ("mmoe.model.name=mmoee", "unknown model 'mmoee'"),
        ("trainer.epoch=3", "did you mean 'epochs'"),
    ],
)
def test_bad_parameters_fail_before_any_node_runs(tmp_path, override, message):
    project = copy_project(tmp_path / "project")
    proc = kedro(
        project,
        "run",
        "--pipelines=train_mmoe",
        "--env",
        "test",
        "--params",
        override,
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (project / "data/02_intermediate/raw_events.parquet").exists()


def test_kedro_run_trains_on_two_gloo_ranks_from_streamed_parquet(tmp_path):
    """``kedro run`` stays the entry point; its node launches the ranks."""
    project = copy_project(tmp_path / "project")
    proc = kedro(
        project,
        "run",
        "--pipelines=train_mmoe",
        "--env",
        "test",
        "--params",
        "trainer.distributed.nproc_per_node=2,trainer.data=stream",
    )
    log = proc.stdout + proc.stderr
    assert "data stream, 2 rank(s) per node" in log
    assert "[rank 0] INFO rank 0/2:" in log and "[rank 1]" not in log
    history = json.loads(
        latest(project, "data/06_models/mmoe/training_history.json").read_text()
    )
    assert history["epochs_run"] == 2
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert (
        history["epochs"][1]["train_loss"]["ctr"]
        < history["epochs"][0]["train_loss"]["ctr"]
    )
    metrics = json.loads(
        latest(project, "data/08_reporting/mmoe/test_metrics.json").read_text()
    )
    assert metrics["test"]["tasks"]["ctr"]["auc"] > 0.6
    run, _ = mlflow_run(project, "mmoe")  # one run: only this process logs
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.distributed.nproc_per_node"] == "2"
