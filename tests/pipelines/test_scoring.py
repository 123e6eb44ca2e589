"""`kedro run --pipeline=score` validates its input like training (CLI, subprocess).

One project is trained once (``train_mmoe --env test``, simulated data) and
each test scores in its own copy of it, built from the raw test split
``data/03_primary/test.parquet``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from filelock import FileLock

from .conftest import copy_project
from .test_train_runs import kedro, latest

pytestmark = pytest.mark.slow

SCORES = "data/07_model_output/mmoe/scores.parquet"
ONNX = "data/06_models/mmoe/model.onnx"
REPORT = "data/08_reporting/mmoe/scoring_report.json"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project after ``train_mmoe --env test`` (trained once per session).

    Under pytest-xdist the workers share the session's temporary root: the
    first one trains (under a file lock), the others reuse its project.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    project = shared / "scoring_trained_project"
    with FileLock(str(shared / "scoring_trained_project.lock")):
        if not (project / ".trained").is_file():
            shutil.rmtree(project, ignore_errors=True)
            copy_project(project)
            kedro(project, "run", "--pipeline=train_mmoe", "--env", "test")
            (project / ".trained").touch()
    return project


@pytest.fixture
def project(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained project (scoring runs never share one)."""
    target = tmp_path / "project"
    shutil.copytree(
        trained, target, ignore=shutil.ignore_patterns(".run.lock", ".staging")
    )
    return target


def score(project: Path, source: str, path: str, check: bool = True):
    return kedro(
        project,
        "run",
        "--pipeline=score",
        "--env",
        "test",
        "--params",
        f"score.experiment=mmoe,score.source={source},score.options.path={path}",
        check=check,
    )


def raw_test_split(project: Path) -> pd.DataFrame:
    return pd.read_parquet(project / "data/03_primary/test.parquet")


def vocabulary(project: Path, field: str) -> set[int]:
    encoder = json.loads((project / "data/04_feature/feature_encoder.json").read_text())
    (vocab,) = [v for v in encoder["sparse"] if v["name"] == field]
    return {int(v) for v in vocab["values"]}


def no_scores_written(project: Path) -> bool:
    folder = project / SCORES
    return not folder.exists() or not any(folder.glob("*/scores.parquet"))


@pytest.mark.parametrize("kind", ["header_only_csv", "empty_parquet"])
def test_an_input_without_rows_fails_naming_the_file(project, kind):
    frame = raw_test_split(project)
    if kind == "header_only_csv":
        # the simulator writes Ali-CCP's columns: read it with that source
        path = project / "new_rows.csv"
        columns = ["click", "purchase", *[c for c in frame.columns if c[0].isdigit()]]
        columns += [c for c in frame.columns if c.startswith("D")]
        pd.DataFrame(columns=columns).to_csv(path, index=False)
        assert path.read_text().count("\n") == 1  # the header only
        proc = score(project, "ali_ccp", str(path), check=False)
    else:
        path = project / "new_rows.parquet"
        frame.iloc[:0].to_parquet(path)
        proc = score(project, "parquet", str(path), check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert f"cannot score the input (file {path}): it has no rows" in log
    assert no_scores_written(project)


def test_bad_rows_are_rejected_counted_and_unseen_ids_reported(project):
    frame = raw_test_split(project)
    n = len(frame)
    bad = frame.copy()
    bad.loc[3, "D508"] = np.inf
    bad.loc[10, "D702"] = -np.inf
    bad.loc[10, "101"] = -5  # one row, two rules: rejected once
    bad.loc[20, "121"] = -1
    bad.loc[30, "D853"] = np.nan
    planted = [40, 41, 42, 43, 44, 45]
    bad.loc[planted, "205"] = 10**9  # never seen in train: unseen, still scored
    path = project / "new_rows.parquet"
    bad.to_parquet(path)
    score(project, "parquet", str(path))

    scored = pd.read_parquet(latest(project, SCORES))
    rejected = [3, 10, 20, 30]
    assert scored["row"].tolist() == [r for r in range(n) if r not in rejected]
    # output schema unchanged: row, kept columns, p_<task>
    assert list(scored.columns) == [
        "row",
        "ctr",
        "ctcvr",
        "true_pctr",
        "true_pcvr",
        "true_pctcvr",
        "day",
        "p_ctr",
        "p_ctcvr",
    ]
    assert scored[["p_ctr", "p_ctcvr"]].notna().all().all()

    report = json.loads(latest(project, REPORT).read_text())
    assert report["experiment"] == "mmoe" and report["source"] == "parquet"
    assert report["inputs"] == [str(path)]
    assert (report["rows_read"], report["rows_scored"], report["rows_rejected"]) == (
        n,
        n - 4,
        4,
    )
    assert report["rejected"]["by_rule"] == {"dense_finite": 3, "ids_non_negative": 2}
    assert report["rejected"]["first_rows"] == rejected
    by_check = report["rejected"]["by_check"]
    assert by_check == {
        "dense_finite:D508:expect_column_values_to_be_between": 1,
        "dense_finite:D702:expect_column_values_to_be_between": 1,
        "dense_finite:D853:expect_column_values_to_not_be_null": 1,
        "ids_non_negative:101:expect_column_values_to_be_between": 1,
        "ids_non_negative:121:expect_column_values_to_be_between": 1,
    }
    checks = {c["check"]: c for c in report["checks"]}
    entry = checks["ids_non_negative:101:expect_column_values_to_be_between"]
    assert (entry["examples"], entry["first_rows"]) == ([-5], [10])
    # the input has no raw click/purchase: label rules were not applied
    assert report["label_rules"]["applied_to"] == []
    assert not {"labels_binary", "labels_not_null"} & {
        c["rule"] for c in checks.values()
    }

    # unseen ids of field 205, by hand: scored rows whose value the encoder
    # does not know (the planted ones plus any the test split already had)
    kept = bad.drop(index=rejected)
    expected = int((~kept["205"].isin(vocabulary(project, "205"))).sum())
    assert expected >= len(planted)
    unseen = report["unseen_ids"]["205"]
    assert unseen["unseen_rows"] == expected and unseen["missing_rows"] == 0
    assert unseen["rate"] == pytest.approx(expected / (n - 4))
    assert set(report["unseen_ids"]) == {c for c in frame.columns if c[0].isdigit()}


def test_too_many_rejected_rows_fail_the_run_with_counts_per_rule(project):
    frame = raw_test_split(project)
    frame.loc[::5, "122"] = -1  # 20 % of the rows, the default allows 1 %
    frame.loc[1, "D509"] = np.inf
    path = project / "new_rows.parquet"
    frame.to_parquet(path)
    proc = score(project, "parquet", str(path), check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    negatives = len(frame.iloc[::5])
    assert f"too many rejected rows in the scoring input (file {path})" in log
    assert f"{negatives + 1} of {len(frame)} rows" in log
    assert f"dense_finite 1, ids_non_negative {negatives}" in log
    assert no_scores_written(project)


def test_a_missing_feature_column_fails_naming_file_and_column(project):
    path = project / "new_rows.parquet"
    raw_test_split(project).drop(columns=["D508"]).to_parquet(path)
    proc = score(project, "parquet", str(path), check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"cannot score the input (file {path})" in log
    assert "expect_column_to_exist on column 'D508'" in log
    assert no_scores_written(project)


def test_the_score_pipeline_needs_no_torch(project, tmp_path):
    """The score pipeline's modules and nodes score with ONNX Runtime alone.

    A second process imports the pipeline, loads the trained project's
    artefacts through the catalog's datasets and runs both nodes, with a
    stand-in ``torch`` first on ``PYTHONPATH`` that records any import
    attempt (and fails it, as on a machine without torch). (A whole `kedro
    run` still loads torch: Kedro validates the typed parameters of every
    registered pipeline, and the experiments' model specs resolve their
    classes.)
    """
    fake = tmp_path / "no_torch" / "torch"
    fake.mkdir(parents=True)
    marker = tmp_path / "torch_imported.txt"
    fake.joinpath("__init__.py").write_text(
        "import traceback\n"
        f"with open({str(marker)!r}, 'a') as fh:\n"
        "    fh.write(''.join(traceback.format_stack()))\n"
        "raise ImportError('torch is not available to the scoring process')\n"
    )
    frame = raw_test_split(project)
    rows = project / "new_rows.parquet"
    frame.to_parquet(rows)
    script = f"""
import json, sys
from pathlib import Path
from mtl_reco.datasets import OnnxModelDataset, ParquetTableDataset
from mtl_reco.experiment.config import ScoreConfig
from mtl_reco.pipelines.score.pipeline import create_pipeline
from mtl_reco.pipelines.score.nodes import report_scoring, score_new_data
from mtl_reco.processing.config import ValidationConfig

project = Path({str(project)!r})
create_pipeline()
model = OnnxModelDataset(filepath={str(latest(project, ONNX))!r}).load()
read = lambda rel: json.loads((project / rel).read_text())
table, stats = score_new_data(
    read("data/04_feature/feature_encoder.json"),
    model,
    read("data/02_intermediate/raw_schema.json"),
    ScoreConfig(experiment="mmoe", options={{"path": {str(rows)!r}}}),
    ValidationConfig(),
)
out = ParquetTableDataset(filepath={str(tmp_path / "scores.parquet")!r})
out.save(table)
report = report_scoring(out.load(), stats)
print(json.dumps({{"scored": report["rows_scored"], "torch": "torch" in sys.modules}}))
"""
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert not marker.exists(), "torch was imported:\n" + marker.read_text()[-3000:]
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"scored": len(frame), "torch": False}
    scored = pd.read_parquet(tmp_path / "scores.parquet")
    assert scored["p_ctr"].between(0, 1).all() and len(scored) == len(frame)
