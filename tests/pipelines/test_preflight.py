"""Checks before the first node, and which experiments __default__ runs.

In-process (a real KedroSession on a project copy); the CLI tests in
test_unattended.py check the same through `kedro run`.
"""

from __future__ import annotations

import logging

import pytest

from mtl_reco import preflight
from mtl_reco.preflight import DatasetTasks, PreflightError
from mtl_reco.runs import FileLock, LockHeldError

from .conftest import copy_project, project_params
from .data_processing.conftest import isolated_mlflow, run_session

__all__ = ["isolated_mlflow"]  # a fixture


CENSUS = DatasetTasks("census_income", ("income", "marital"), None, "configuration")
FUNNEL = DatasetTasks("simulated", ("ctr", "ctcvr"), ("ctr", "ctcvr"), "configuration")


def block(model: str, **model_fields) -> dict:
    return {"model": {"name": model, **model_fields}, "weighting": {"name": "fixed"}}


def test_experiment_requirements_against_the_tasks():
    params = {"esmm": block("esmm"), "mmoe": block("mmoe"), "aitm": block("aitm")}
    problem = preflight.experiment_problem("esmm", params, CENSUS)
    assert problem == (
        "model esmm needs a click -> conversion funnel and dataset 'census_income' "
        "(tasks income, marital; no click -> conversion funnel) has none"
    )
    assert preflight.experiment_problem("esmm", params, FUNNEL) is None
    assert preflight.experiment_problem("mmoe", params, CENSUS) is None
    params["mmoe"] = block("mmoe", tasks=["ctr", "cvr"])
    assert "names ['cvr'], which are not tasks of" in str(
        preflight.experiment_problem("mmoe", params, FUNNEL)
    )


def test_configured_tasks_come_from_the_source_and_labels(shared_data):
    sim = preflight.configured_tasks({"dataset": "simulated"})
    assert sim.tasks == ("ctr", "ctcvr") and sim.funnel == ("ctr", "ctcvr")
    census_file = shared_data / "census-income-kdd/uci-raw"
    census = preflight.configured_tasks(
        {
            "dataset": "census_income",
            "sources": {
                "census_income": {
                    "path": str(census_file / "census_income_1994_1995_train.csv.gz")
                }
            },
        }
    )
    assert census.tasks == ("income", "marital") and census.funnel is None
    none = preflight.configured_tasks(
        {"dataset": "simulated", "labels": {"funnel": "none"}}
    )
    assert none.funnel is None
    with pytest.raises(PreflightError, match=r"did you mean 'simulated'\?"):
        preflight.configured_tasks({"dataset": "simulate"})
    with pytest.raises(PreflightError, match=r"file not found: /nope\.csv"):
        preflight.configured_tasks(
            {
                "dataset": "census_income",
                "sources": {"census_income": {"path": "/nope.csv"}},
            }
        )


def test_default_leaves_out_what_cannot_train_on_the_data():
    from kedro.framework.project import configure_project

    import mtl_reco.pipeline_registry as registry
    from mtl_reco.experiment import experiment_names
    from mtl_reco.modeling.models.registry import get_model_class

    configure_project("mtl_reco")
    base = project_params()
    params = {e: base[e] for e in experiment_names(base)}
    EXPERIMENTS = set(params)
    funnel_only = {
        e
        for e, b in params.items()
        if get_model_class(b["model"]["name"]).requires_funnel
    }
    assert "esmm" in funnel_only
    try:
        preflight.remember_parameters({**params, "dataset": "simulated"})
        default = registry.register_pipelines()["__default__"]
        assert {n.namespace for n in default.nodes if n.namespace} == set(
            EXPERIMENTS
        ) | {"data_processing"}
        preflight.remember_parameters(
            {**params, "dataset": "simulated", "labels": {"funnel": "none"}}
        )
        seen: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = seen.append  # Kedro's logging setup may replace caplog's
        target = logging.getLogger("mtl_reco.pipeline_registry")
        target.addHandler(handler)
        try:
            pipes = registry.register_pipelines()
        finally:
            target.removeHandler(handler)
        namespaces = {n.namespace for n in pipes["__default__"].nodes if n.namespace}
        assert namespaces == (set(EXPERIMENTS) - funnel_only) | {"data_processing"}
        warned = [r.getMessage() for r in seen if r.levelno == logging.WARNING]
        assert len(warned) == len(funnel_only)
        assert "__default__ leaves out experiment 'esmm'" in " ".join(warned)
        assert "train_esmm" in pipes  # still there, to fail with the reason
    finally:
        preflight.forget_parameters()


@pytest.fixture
def project(tmp_path, isolated_mlflow):
    return copy_project(tmp_path / "project")


def test_train_esmm_without_a_funnel_fails_before_any_node(project):
    with pytest.raises(PreflightError) as err:
        run_session(project, {"labels": {"funnel": "none"}}, pipeline="train_esmm")
    assert str(err.value).startswith(
        "experiment 'esmm' cannot train here: model esmm needs a click -> conversion"
    )
    assert not any((project / "data").rglob("*.parquet"))
    assert not (project / "data" / "run_history.jsonl").exists()
    assert FileLock(project / "data" / ".run.lock").acquire() is None  # released


def test_cuda_on_a_machine_without_one_fails_before_any_node(project, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PreflightError, match="CUDA is not available"):
        run_session(project, {"trainer": {"device": "cuda"}}, pipeline="train_mmoe")
    assert not any((project / "data").rglob("*.parquet"))


def test_a_held_lock_turns_the_run_away(project):
    lock = FileLock(project / "data" / ".run.lock")
    lock.acquire()
    try:
        with pytest.raises(LockHeldError, match="is locked by pid"):
            run_session(project, pipeline="data_processing")
    finally:
        lock.release()
    assert not any((project / "data").rglob("*.parquet"))
    run_session(project, pipeline="data_processing")  # free again: it runs
    assert (project / "data/05_model_input/encoded_train.parquet").is_file()


def _promoting_run(project, run_id: str, rel: str):
    """A run that died while promoting: ``rel`` is still in its staging folder."""
    import json

    from mtl_reco.runs import RunStore

    store = RunStore(project / "data")
    store.begin(run_id, {"command": "kedro run (killed while promoting)"})
    staged = store.staged_path(run_id, project / "data" / rel)
    staged.parent.mkdir(parents=True, exist_ok=True)
    (project / "data" / rel).replace(staged)
    record_file = store.run_dir(run_id) / "run.json"
    record = json.loads(record_file.read_text())
    record["status"] = "promoting"
    record_file.write_text(json.dumps(record))
    return store


def test_dead_runs_are_recovered_before_the_checks_read_the_inputs(project):
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession

    run_session(project, pipeline="data_processing")
    store = _promoting_run(
        project, "2020-01-01T00.00.00.000Z", "05_model_input/encoded_train.parquet"
    )
    assert not (project / "data/05_model_input/encoded_train.parquet").exists()
    configure_project("mtl_reco")
    with KedroSession.create(project_path=project, env="test") as session:
        session.run(pipeline_names=["train_mmoe"], from_nodes=["mmoe.train"])
    assert (project / "data/05_model_input/encoded_train.parquet").is_file()
    statuses = {r["run_id"]: r["status"] for r in store.history()}
    assert statuses["2020-01-01T00.00.00.000Z"] == "succeeded"


def test_a_promotion_that_cannot_complete_moves_nothing(project):
    from mtl_reco.runs import StoreError

    run_session(project, pipeline="data_processing")
    report = project / "data/08_reporting/label_report.json"

    def current() -> dict:
        return {p: p.read_bytes() for p in (project / "data").glob("0*/*.parquet")}

    before = current()
    report.unlink()
    report.mkdir()  # a folder where the run will want to put its file
    with pytest.raises(StoreError, match="a folder is in the way"):
        run_session(
            project,
            {"sources": {"simulated": {"n_rows": 3000}}},
            pipeline="data_processing",
        )
    assert current() == before and before
    assert not any((project / "data/.staging").iterdir())  # nothing half-promoted
    # its MLflow run is ended FAILED, not left open for MLflow's exit handler
    import mlflow
    from mlflow.tracking import MlflowClient

    assert mlflow.active_run() is None
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mtl_reco_test")
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])
    assert [r.info.status for r in runs] == ["FINISHED", "FAILED"]
    (kept,) = (project / "data/failed_runs").iterdir()
    assert (kept / "outputs/08_reporting/label_report.json").is_file()
    report.rmdir()
    run_session(project, pipeline="data_processing")  # the folder is not blocked
    assert report.is_file()


def test_an_unreachable_tracking_store_does_not_stop_or_block_the_run(
    project, monkeypatch
):
    (project / "conf/test/mlflow.yml").write_text(
        "server:\n  mlflow_tracking_uri: sqlite:////proc/no/such/dir/mlflow.db\n"
    )
    from mtl_reco import hooks

    errors: list[str] = []
    # the session's logging set-up drops handlers added to its loggers
    monkeypatch.setattr(
        hooks.logger, "error", lambda msg, *args: errors.append(msg % args)
    )
    run_session(project, pipeline="train_mmoe")
    assert len(errors) == 1
    assert errors[0].startswith("MLflow: tracking is off for this run (")
    assert (project / "data/05_model_input/encoded_train.parquet").is_file()
    assert not any((project / "data/.staging").iterdir())
    assert FileLock(project / "data" / ".run.lock").acquire() is None  # released


def test_a_file_source_without_its_catalog_entry_fails_before_any_node(
    tmp_path, monkeypatch
):
    """A format description without the catalog entry naming its files."""
    from kedro.io import DataCatalog

    from mtl_reco.pipelines.data_processing.ingestion.pipeline import create_pipeline
    from mtl_reco.sources import registry

    monkeypatch.setattr(registry, "_SOURCES", dict(registry._SOURCES))
    path = tmp_path / "toy_share.yml"
    path.write_text("labels: [click]\nsparse: [a]\n")
    registry.register_format(path)
    ingestion = create_pipeline()
    assert "toy_share_files" in ingestion.inputs()
    catalog = DataCatalog.from_config(
        {
            f"{s}_files": {
                "type": "mtl_reco.datasets.SourceFilesDataset",
                "files": None,
            }
            for s in registry.file_sources()
            if s != "toy_share"
        }
    )
    with pytest.raises(PreflightError) as err:
        preflight.check_run(
            {"dataset": "simulated"}, ingestion, catalog, {"ingestion": ingestion}
        )
    assert str(err.value) == (
        "source 'toy_share' reads files but the catalog has no entry "
        "'toy_share_files': declare it in conf/base/catalog.yml (type "
        "mtl_reco.datasets.SourceFilesDataset, files: its path or train/valid/test "
        "files)"
    )
