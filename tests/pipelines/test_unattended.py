"""Unattended runs the way they happen: real `kedro run` processes, real signals.

* one run at a time per data folder (a second process is turned away at once,
  naming the holder; a SIGKILLed holder's lock is taken over);
* a failing, interrupted or killed run changes nothing a later run loads
  (checksums of every artefact before and after);
* training resumes only from a checkpoint made with identical settings and
  data, and then ends exactly where an uninterrupted run ends;
* everything checkable is checked before the first node, in one line;
* partial pipelines and pruning keep working on top of the staging.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from mtl_reco.experiment import experiment_names
from mtl_reco.modeling.models.registry import get_model_class

from .conftest import PROJECT_ROOT, copy_project, project_params, use_source_files

KEDRO = str(Path(sys.executable).with_name("kedro"))
pytestmark = pytest.mark.slow

# Not artefacts a later run loads by default: the run store's own records and
# the training checkpoints (which an interrupted run is meant to leave).
NOT_ARTEFACTS = (".staging/", "failed_runs/", "06_models/checkpoints/")
NOT_ARTEFACT_FILES = ("run_history.jsonl", ".run.lock")
# Enough epochs and batches that a kill after epoch 2 lands mid-training.
LONG = (
    "sources.simulated.n_rows=20000,trainer.epochs=20,trainer.batch_size=64,"
    "trainer.early_stopping.patience=100"
)


def env() -> dict[str, str]:
    # project copies live in a temporary folder: point them at the real data
    shared = os.environ.get("MTL_RECO_SHARED_DATA") or str(
        PROJECT_ROOT.parent / "shared" / "data"
    )
    out = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "MTL_RECO_SHARED_DATA": shared,
    }
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        out.pop(name, None)  # the project's own sqlite store
    return out


def kedro(project: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [KEDRO, "run", *args],
        cwd=project,
        env={**env(), **extra_env},
        capture_output=True,
        text=True,
        timeout=900,
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc.stdout + proc.stderr


def start(project: Path, log: Path, *args: str) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(
        [KEDRO, "run", *args],
        cwd=project,
        env=env(),
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(
    log: Path, text: str, proc: subprocess.Popen, timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        assert proc.poll() is None, f"run ended before {text!r}:\n{log.read_text()}"
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not seen in {timeout}s:\n{log.read_text()}")


def checksums(project: Path) -> dict[str, str]:
    """sha256 of every artefact file under data/ (what later runs load)."""
    data = project / "data"
    out = {}
    for path in sorted(data.rglob("*")):
        rel = path.relative_to(data).as_posix()
        if path.is_dir() or rel.startswith(NOT_ARTEFACTS) or rel in NOT_ARTEFACT_FILES:
            continue
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def history(project: Path) -> list[dict]:
    text = (project / "data" / "run_history.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def latest(project: Path, rel: str) -> Path:
    versions = sorted((project / rel).iterdir())
    return versions[-1] / Path(rel).name


def mlflow_runs(project: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mtl_reco_test")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The CLI's one-line error (the last stderr line)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), proc.stderr[-4000:]
    return lines[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A project after one successful `train_mmoe --env test` run."""
    project = copy_project(tmp_path_factory.mktemp("trained") / "project")
    ok(kedro(project, "--pipeline=train_mmoe", "--env", "test"))
    return project


@pytest.fixture
def project(trained, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(trained, copy)
    return copy


def test_second_run_is_turned_away_at_once_naming_the_holder(tmp_path):
    project = copy_project(tmp_path / "project")
    log = tmp_path / "first.log"
    first = start(
        project,
        log,
        "--pipeline=data_processing",
        "--env",
        "test",
        "--params",
        "sources.simulated.n_rows=150000",
    )
    try:
        wait_for(log, "output(s) staged in", first)  # the lock is held by now
        began = time.monotonic()
        second = kedro(
            project,
            "--pipeline=data_processing",
            "--env",
            "test",
            "--params",
            "sources.simulated.n_rows=3000",
        )
        took = time.monotonic() - began
        assert first.poll() is None, (
            "the second run must be refused while the first runs"
        )
    finally:
        first.wait(timeout=600)
    assert second.returncode == 1
    line = error_line(second)
    assert f"is locked by pid {first.pid} on " in line
    assert "--params sources.simulated.n_rows=150000" in line  # the holder's command
    assert "Running node" not in second.stderr
    assert took < 60
    assert first.returncode == 0, log.read_text()[-4000:]
    # the data is the first run's, through every stage
    report = json.loads(
        (project / "data/08_reporting/validation/validation_report.json").read_text()
    )
    assert report["rows"] == 150000
    split = json.loads((project / "data/08_reporting/split_report.json").read_text())
    assert split["rows"] == 150000
    encoded = sum(
        len(pd.read_parquet(project / f"data/05_model_input/encoded_{s}.parquet"))
        for s in ("train", "valid", "test")
    )
    assert encoded == 150000
    assert [r["status"] for r in history(project)] == ["succeeded"]


@pytest.mark.parametrize("case", ["header_only_train_file", "label_of_two"])
def test_failing_run_changes_nothing_a_later_run_loads(
    project, tmp_path, shared_data, case
):
    sample = shared_data / "ali-ccp" / "torch-rechub"
    if case == "header_only_train_file":
        bad = tmp_path / "train_header_only.csv"
        header = (sample / "ali_ccp_train_sample.csv").read_text().splitlines()[0]
        bad.write_text(header + "\n")
        expected = f"input file {bad} (split 'train') has 0 rows"
    else:
        frame = pd.read_csv(sample / "ali_ccp_train_sample.csv")
        frame.loc[3, "click"] = 2
        bad = tmp_path / "label_of_two.csv"
        frame.to_csv(bad, index=False)
        expected = "on column 'click': 1 of"
    before = checksums(project)
    # the bad train file replaces the catalog's (ali_ccp_files), for this run only
    files = {
        "train": bad,
        "valid": sample / "ali_ccp_val_sample.csv",
        "test": sample / "ali_ccp_test_sample.csv",
    }
    use_source_files(project, "ali_ccp", files)
    proc = kedro(
        project, "--pipeline=train_mmoe", "--env", "test", "--params", "dataset=ali_ccp"
    )
    assert proc.returncode == 1
    line = error_line(proc)
    assert "validation failed for source 'ali_ccp'" in line and expected in line
    assert "Traceback" not in proc.stderr
    assert checksums(project) == before
    last = history(project)[-1]
    assert last["status"] == "failed" and expected in last["error"]
    kept = Path(last["kept_in"])
    assert kept.parent == project / "data" / "failed_runs"
    # its outputs are kept for inspection, and never loaded by a later run
    report = json.loads(
        (kept / "outputs/08_reporting/validation/validation_report.json").read_text()
    )
    assert report["success"] is False
    ok(kedro(project, "--pipeline=compare", "--env", "test"))


def test_interrupted_and_killed_runs_change_nothing_and_are_closed(project, tmp_path):
    before = checksums(project)
    runs_before = len(mlflow_runs(project))
    args = ("--pipeline=train_mmoe", "--env", "test", "--params", LONG)
    # SIGTERM: the run unwinds itself, its MLflow run ends KILLED
    log = tmp_path / "term.log"
    proc = start(project, log, *args)
    wait_for(log, "epoch 2/", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    assert "error: run interrupted by SIGTERM" in log.read_text()
    assert checksums(project) == before
    assert history(project)[-1]["status"] == "interrupted"
    assert mlflow_runs(project)[-1].info.status == "KILLED"
    # SIGKILL: nothing can run in the process; the next run cleans up after it
    # (this run resumes from the interrupted one's checkpoint: same settings)
    log = tmp_path / "kill.log"
    proc = start(project, log, *args)
    wait_for(log, "epoch 5/", proc)
    proc.kill()
    proc.wait(timeout=60)
    assert checksums(project) == before
    killed_id = json.loads((project / "data/.run.lock").read_text())["pid"]
    assert killed_id == proc.pid  # the dead holder is still written in the lock
    assert mlflow_runs(project)[-1].info.status == "RUNNING"
    out = ok(kedro(project, "--pipeline=compare", "--env", "test"))
    assert f"took over the lock of {project / 'data'} from pid {proc.pid}" in out
    assert "did not finish: its process is gone" in out
    assert "was left RUNNING by a process that is gone; marked KILLED" in out
    statuses = [r["status"] for r in history(project)]
    assert statuses[-3:] == ["interrupted", "killed", "succeeded"]
    # each run and its experiment's child run; the comparison's own run
    runs = mlflow_runs(project)[runs_before:]
    assert [(r.info.run_name, r.info.status) for r in runs] == [
        ("train_mmoe", "KILLED"),
        ("mmoe", "KILLED"),
        ("train_mmoe", "KILLED"),
        ("mmoe", "KILLED"),
        ("compare", "FINISHED"),
    ]
    failed = sorted((project / "data" / "failed_runs").iterdir())
    assert [json.loads((f / "run.json").read_text())["status"] for f in failed] == [
        "interrupted",
        "killed",
    ]
    # every artefact but the comparison is still the first run's
    after = checksums(project)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed and all("model_comparison" in k for k in changed)


def _processes_in(folder: Path) -> list[int]:
    """Pids of the processes whose working directory is ``folder``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cwd").resolve() == folder.resolve():
                pids.append(int(entry.name))
        except OSError:  # gone, or not ours
            continue
    return pids


def test_sigterm_during_data_parallel_training_unwinds_the_run(project, tmp_path):
    """The launcher's own signal handling must not swallow the run guard's."""
    before = checksums(project)
    log = tmp_path / "ddp.log"
    args = ("--pipeline=train_mmoe", "--env", "test", "--params",
            LONG + ",trainer.distributed.nproc_per_node=2")  # fmt: skip
    proc = start(project, log, *args)
    wait_for(log, "[rank 0] INFO epoch 2/", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    assert "error: run interrupted by SIGTERM" in log.read_text()
    assert checksums(project) == before
    assert history(project)[-1]["status"] == "interrupted"
    assert mlflow_runs(project)[-1].info.status == "KILLED"
    deadline = time.monotonic() + 30
    while _processes_in(project) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_in(project) == []  # no rank left behind


def _state(project: Path) -> dict[str, torch.Tensor]:
    return torch.load(
        latest(project, "data/06_models/mmoe/model_state.pt"), weights_only=True
    )


def _losses(project: Path) -> list[dict]:
    saved = json.loads(
        latest(project, "data/06_models/mmoe/training_history.json").read_text()
    )
    return [
        {k: r[k] for k in ("epoch", "train_loss", "valid", "lr")}
        for r in saved["epochs"]
    ]


def test_resume_only_from_identical_settings_and_then_exactly(tmp_path):
    args = ("--pipeline=train_mmoe", "--env", "test", "--params", LONG)
    reference = copy_project(tmp_path / "reference")
    ok(kedro(reference, *args))
    project = copy_project(tmp_path / "project")
    # killed mid-training, then the same command again: resumes, same result
    log = tmp_path / "kill1.log"
    proc = start(project, log, *args)
    wait_for(log, "epoch 2/", proc)
    proc.kill()
    proc.wait(timeout=60)
    assert (project / "data/06_models/checkpoints/mmoe/last.pt").is_file()
    out = ok(kedro(project, *args))
    assert "resumed from data/06_models/checkpoints/mmoe/last.pt (epoch " in out
    mine, theirs = _state(project), _state(reference)
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    assert _losses(project) == _losses(reference)
    assert not (project / "data/06_models/checkpoints/mmoe").exists()  # completed
    # killed again, then rerun with another learning rate: starts fresh
    log = tmp_path / "kill2.log"
    proc = start(project, log, *args)
    wait_for(log, "epoch 2/", proc)
    proc.kill()
    proc.wait(timeout=60)
    out = ok(kedro(project, *args[:-1], LONG + ",trainer.optimizer.lr=0.05"))
    assert "resumed from" not in out
    assert (
        "not resuming from data/06_models/checkpoints/mmoe/last.pt: it was made with "
        "other settings (trainer.optimizer.lr: 0.005 -> 0.05); starting fresh"
    ) in out
    epochs = _losses(project)
    assert epochs[0]["epoch"] == 1 and len(epochs) == 20
    assert {lr for e in epochs for lr in e["lr"].values()} == {0.05}
    run = mlflow_runs(project)[-1]
    assert run.data.params["trainer.optimizer.lr"] == "0.05"


@pytest.mark.parametrize(
    ("params", "extra_env", "message"),
    [
        (
            "traine.epochs=3",
            {},
            "unknown parameter block 'traine' (did you mean 'trainer'?)",
        ),
        (
            "dataset=census_incom",
            {},
            "unknown dataset 'census_incom' (did you mean 'census_income'?)",
        ),
        (
            "trainer.device=cuda",
            {"CUDA_VISIBLE_DEVICES": ""},
            "trainer.device: device 'cuda' requested but CUDA is not available",
        ),
        (
            "trainer.compile=true,mmoe.weighting.name=gradnorm",
            {},
            "trainer.compile: experiment 'mmoe' uses the loss weighting 'gradnorm'",
        ),
        (
            "trainer.epochz=3",
            {},
            "error: trainer: unknown key 'epochz' for TrainerConfig "
            "(did you mean 'epochs'?). Known keys: amp, batch_size,",
        ),
        (
            "trainer.optimizer.lr=0",
            {},
            "error: trainer: TrainerConfig.optimizer: OptimizerConfig.lr must be "
            "> 0.0, got 0",
        ),
    ],
)
def test_knowable_problems_stop_the_run_before_its_first_node(
    tmp_path, params, extra_env, message
):
    project = copy_project(tmp_path / "project")
    proc = kedro(
        project,
        "--pipeline=train_mmoe",
        "--env",
        "test",
        "--params",
        params,
        **extra_env,
    )
    assert proc.returncode == 1
    assert message in error_line(proc)
    assert "Running node" not in proc.stderr and "Traceback" not in proc.stderr
    assert checksums(project) == {}
    assert mlflow_runs(project) == []  # no MLflow run left behind
    assert not (project / "data" / "run_history.jsonl").exists()


def test_verbose_adds_a_short_traceback(tmp_path):
    project = copy_project(tmp_path / "project")
    proc = kedro(project, "--env", "test", "--params", "traine.epochs=3", "--verbose")
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert len(proc.stderr.splitlines()) < 60
    assert error_line(proc).startswith("error: unknown parameter block 'traine'")


def test_partial_pipelines_read_the_current_artefacts(project):
    before = checksums(project)
    out = ok(
        kedro(
            project,
            "--pipeline=train_mmoe",
            "--env",
            "test",
            "--from-nodes=mmoe.evaluate,mmoe.export_onnx",
        )
    )
    assert "train_model(" not in out and "ingest_source(" not in out
    assert "evaluate_experiment(" in out and "export_model(" in out
    after = checksums(project)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing replaced
    new = set(after) - set(before)
    assert new and all(
        k.startswith(("06_models/mmoe/", "07_model_output/mmoe/", "08_reporting/mmoe/"))
        for k in new
    )
    assert "model_state.pt" not in " ".join(new)  # training did not run
    # an input nobody wrote yet is named before the first node
    fresh = copy_project(project.parent / "fresh")
    proc = kedro(fresh, "--pipeline=score", "--env", "test")
    assert proc.returncode == 1
    assert error_line(proc).startswith(
        "error: no trained model for score.experiment='mmoe'"
    )
    assert "train it first (`kedro run --pipelines=train_mmoe`)" in error_line(proc)
    proc = kedro(
        fresh, "--pipeline=train_mmoe", "--env", "test", "--from-nodes=mmoe.train"
    )
    assert proc.returncode == 1
    assert "do not exist yet" in error_line(proc) and "'encoded_train'" in proc.stderr


def test_prune_keeps_the_newest_versions(project):
    model = project / "data/06_models/mmoe/model_state.pt"
    (current,) = list(model.iterdir())
    shutil.copytree(current, model / "2020-01-01T00.00.00.000Z")
    out = ok(
        kedro(
            project,
            "--pipeline=prune",
            "--env",
            "test",
            "--params",
            "runs.keep_versions=1",
        )
    )
    assert "pruned" in out
    assert [p.name for p in model.iterdir()] == [current.name]
    report = json.loads((project / "data/08_reporting/prune_report.json").read_text())
    assert (
        "06_models/mmoe/model_state.pt/2020-01-01T00.00.00.000Z"
        in report["versions_removed"]
    )


def test_census_profile_runs_the_experiments_that_apply(tmp_path, shared_data):
    project = copy_project(tmp_path / "project")
    out = ok(kedro(project, "--env", "census_income"))
    assert out.count("__default__ leaves out experiment 'esmm'") == 1
    assert "model esmm needs a click -> conversion funnel" in out
    assert "aitm: AITM's calibrator is off" in out
    params = project_params("census_income")
    trained = [  # every experiment whose model needs no funnel (ESMM does)
        e
        for e in experiment_names(params)
        if not get_model_class(params[e]["model"]["name"]).requires_funnel
    ]
    assert "esmm" not in trained and {"mmoe", "aitm"} <= set(trained)
    for exp in trained:
        saved = json.loads(
            latest(project, f"data/06_models/{exp}/training_history.json").read_text()
        )
        # trained until the validation AUC stopped improving, not to a budget
        assert saved["stopped_early"] and saved["best_epoch"] < saved["epochs_run"]
        assert saved["tasks"] == ["income", "marital"]
        metrics = json.loads(
            latest(project, f"data/08_reporting/{exp}/test_metrics.json").read_text()
        )
        assert metrics["test"]["tasks"]["income"]["auc"] > 0.94
        assert metrics["test"]["tasks"]["marital"]["auc"] > 0.99
    assert not (project / "data/06_models/esmm").exists()
    table = pd.read_csv(latest(project, "data/08_reporting/model_comparison.csv"))
    assert sorted(table["experiment"]) == sorted(trained)
    # the funnel model asked for by name fails before its first node
    before = checksums(project)
    proc = kedro(project, "--env", "census_income", "--pipeline=train_esmm")
    assert proc.returncode == 1
    assert error_line(proc).startswith(
        "error: experiment 'esmm' cannot train here: model esmm needs a click -> "
        "conversion funnel"
    )
    assert "Running node" not in proc.stderr
    assert checksums(project) == before


def test_a_model_never_reads_data_of_another_encoder(project):
    # new data processed after training: the trained model no longer matches
    ok(
        kedro(
            project,
            "--pipeline=data_processing",
            "--env",
            "test",
            "--params",
            "sources.simulated.n_rows=8000",
        )
    )
    before = checksums(project)
    for args in (
        ("--pipeline=score",),
        ("--pipeline=train_mmoe", "--from-nodes=mmoe.evaluate"),
    ):
        proc = kedro(project, *args, "--env", "test")
        assert proc.returncode == 1
        line = error_line(proc)
        assert "the model was trained with feature encoder" in line
        assert (
            "retrain it on the current data "
            "(`kedro run --pipelines=train_mmoe`)" in line
        )
        assert "Running node" not in proc.stderr
    assert checksums(project) == before
    # retrained but not exported again: the ONNX model itself is checked
    ok(
        kedro(
            project,
            "--pipeline=train_mmoe",
            "--env",
            "test",
            "--to-nodes=mmoe.train",
            "--params",
            "sources.simulated.n_rows=8000",
        )
    )
    proc = kedro(project, "--pipeline=score", "--env", "test")
    assert proc.returncode == 1
    assert error_line(proc).startswith("error: 'scoring_model': the model was trained")
    ok(kedro(project, "--pipeline=train_mmoe", "--env", "test"))  # retrained, exported
    ok(kedro(project, "--pipeline=score", "--env", "test"))


def test_a_run_failing_after_training_resumes_without_training_again(project):
    args = ("--pipeline=train_mmoe", "--env", "test")
    proc = kedro(project, *args, "--params", "export.tolerance=1e-30")
    assert proc.returncode == 1
    assert "error: ONNX export of mmoe differs from PyTorch by" in error_line(proc)
    assert (project / "data/06_models/checkpoints/mmoe/last.pt").is_file()
    out = ok(kedro(project, *args))
    assert "resumed from data/06_models/checkpoints/mmoe/last.pt (epoch " in out
    assert "mtl_reco.modeling.trainer: epoch " not in out  # nothing trained again
    assert not (project / "data/06_models/checkpoints/mmoe").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--pipeline=trian_mmoe",), "Failed to find the pipeline named 'trian_mmoe'"),
        (("--env", "tst"), "conf/tst"),
        (("--pipeline=train_mmoe", "--from-nodes=mmoe.evaluat"), "mmoe.evaluat"),
    ],
)
def test_mistyped_run_arguments_are_one_line(tmp_path, args, message):
    project = copy_project(tmp_path / "project")
    proc = kedro(project, *args)
    assert proc.returncode == 1
    assert message in error_line(proc) and "Traceback" not in proc.stderr
