"""What a user finds in MLflow after `kedro run`: runs, metrics, registered models.

One project copy goes through a training run, a comparison and a scoring run
by registry URI (CLI, subprocess), like a user at a terminal would.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_reco.serving import read_description

from .conftest import copy_project
from .test_train_runs import kedro, latest

pytestmark = pytest.mark.slow

EPOCHS = 2  # conf/test/parameters_training.yml


def test_training_comparison_and_scoring_through_the_registry(tmp_path):
    import mlflow.onnx
    import onnxruntime as ort
    from mlflow.tracking import MlflowClient

    project = copy_project(tmp_path / "project")
    kedro(project, "run", "--pipelines=train_mmoe", "--env", "test")

    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("mtl_reco_test")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 1
    parent, child = parents[0], children[0]

    # tags name what was asked for, the Kedro run and where the code came from
    for run in (parent, child):
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags["kedro.pipeline"] == "train_mmoe"
        assert tags["kedro.run_id"] and tags["dataset"] == "simulated"
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"]
        assert tags["mlflow.source.name"].endswith("kedro")
    assert parent.info.run_name == "train_mmoe" and child.info.run_name == "mmoe"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["kedro.run_id"] == parent.data.tags["kedro.run_id"]
    # the experiment's run starts after data processing and ends before the run
    assert parent.info.start_time < child.info.start_time
    assert child.info.end_time <= parent.info.end_time
    # parameters: kedro-mlflow logs every node's on the parent
    assert parent.data.params["trainer.epochs"] == str(EPOCHS)
    assert parent.data.params["mmoe.model.name"] == "mmoe"
    # the child's own parameters without the namespace, to line experiments up
    assert child.data.params["model.name"] == "mmoe"
    assert child.data.params["trainer.epochs"] == str(EPOCHS)
    # each node's own time (experiments' nodes interleave in a longer run)
    assert {"time.train_s", "time.evaluate_s", "time.export_onnx_s"} <= set(
        child.data.metrics
    )

    # per-epoch metrics are steps 1..epochs; final values under their own keys
    history = client.get_metric_history(child.info.run_id, "valid.mean.auc")
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
    metrics = child.data.metrics
    assert 0.0 <= metrics["final.valid.mean.auc"] <= 1.0
    assert 0.0 <= metrics["test.ctr.auc"] <= 1.0

    # the ONNX model is an MLflow model, registered once per run
    versions = client.search_model_versions("name = 'mtl_reco-mmoe'")
    assert [int(v.version) for v in versions] == [1]
    assert versions[0].run_id == child.info.run_id
    model_info = mlflow.models.get_model_info("models:/mtl_reco-mmoe/1")
    local = latest(project, "data/06_models/mmoe/model.onnx")
    description = read_description(str(local))
    signature = model_info.signature
    assert signature.outputs.input_names() == [
        o["name"] for o in description["outputs"]
    ]
    assert {"ctr", "ctcvr"} <= set(signature.outputs.input_names())
    assert signature.inputs.input_names() == [i["name"] for i in description["inputs"]]
    assert model_info.saved_input_example_info is not None
    registered = mlflow.onnx.load_model("models:/mtl_reco-mmoe/1")
    test = pd.read_parquet(project / "data/05_model_input/encoded_test.parquet")
    sessions = [
        ort.InferenceSession(registered.SerializeToString()),
        ort.InferenceSession(str(local)),
    ]
    feeds = {
        i["name"]: test[i["feature"]].to_numpy(
            dtype=np.int64 if i["kind"] == "sparse" else np.float32
        )
        for i in description["inputs"]
    }
    got, want = (s.run(None, feeds) for s in sessions)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)

    # compare moves the champion alias to the best experiment (only mmoe here)
    kedro(project, "run", "--pipelines=compare", "--env", "test")
    champion = client.get_model_version_by_alias("mtl_reco-mmoe", "champion")
    assert int(champion.version) == 1

    # score loads the champion by URI and scores like the local model
    kedro(
        project,
        "run",
        "--pipelines=score",
        "--env",
        "test",
        "--params",
        "score.model_uri=models:/mtl_reco-mmoe@champion,score.experiment=mmoe",
    )
    by_uri = pd.read_parquet(
        latest(project, "data/07_model_output/mmoe/scores.parquet")
    )
    reference = pd.read_parquet(
        latest(project, "data/07_model_output/mmoe/test_predictions.parquet")
    )
    assert len(by_uri) == len(reference) > 100
    # a registered model is never scored under another experiment's name
    proc = kedro(
        project,
        "run",
        "--pipelines=score",
        "--env",
        "test",
        "--params",
        "score.model_uri=models:/mtl_reco-mmoe/1,score.experiment=ple",
        check=False,
    )
    assert proc.returncode == 1
    assert (
        "models:/mtl_reco-mmoe/1 is experiment 'mmoe', but score.experiment is 'ple'"
    ) in proc.stderr
    assert not (project / "data/07_model_output/ple").exists()
    np.testing.assert_allclose(by_uri["p_ctr"], reference["p_ctr"], atol=1e-5, rtol=0)
