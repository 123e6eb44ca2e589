"""The validation stage inside a real Kedro run on bad Ali-CCP files.

Each bad file stops `data_processing` with a message naming the expectation,
the column and the number of broken rows; the failed run's validation report
is kept under data/failed_runs/; every current artefact (the previous good
run's report included) is untouched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mtl_reco.processing.encoder import EncoderError
from mtl_reco.processing.validation import DataValidationError

from ..conftest import use_source_files
from .conftest import ali_ccp_frame, copy_project, run_session

DOWNSTREAM = (
    "data/03_primary/labelled_events.parquet",
    "data/03_primary/train.parquet",
    "data/04_feature/feature_encoder.json",
    "data/05_model_input/encoded_train.parquet",
    "data/05_model_input/feature_schema.json",
)
REPORT = "data/08_reporting/validation/validation_report.json"
SUMMARY = "data/08_reporting/validation/validation_summary.md"


def params(project: Path, csv: Path, **validation) -> dict:
    """Read one Ali-CCP file (the catalog's ali_ccp_files) with these rules."""
    use_source_files(project, "ali_ccp", {"path": csv})
    out: dict = {"dataset": "ali_ccp"}
    if validation:
        out["validation"] = validation
    return out


@pytest.fixture(scope="module")
def good_project(tmp_path_factory):
    """A project copy after one successful run on a clean Ali-CCP file."""
    mp = pytest.MonkeyPatch()
    store = tmp_path_factory.mktemp("mlruns")
    mp.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mp.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    project = copy_project(tmp_path_factory.mktemp("good") / "project")
    csv = project / "data" / "01_raw" / "ali_ccp.csv"
    ali_ccp_frame(100).to_csv(csv, index=False)
    run_session(project, params(project, csv))
    yield project
    mp.undo()


@pytest.fixture
def project(good_project, tmp_path, isolated_mlflow):
    copy = tmp_path / "project"
    shutil.copytree(good_project, copy)
    return copy


def snapshot(project: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for rel in DOWNSTREAM:
        stat = (project / rel).stat()
        out[rel] = (stat.st_size, stat.st_mtime_ns)
    return out


def _label_two(frame):
    frame.loc[10, "click"] = 2
    return frame


def _purchase_without_click(frame):
    rows = frame.index[frame["click"] == 0][:3]
    frame.loc[rows, "purchase"] = 1
    return frame


def _nan_dense(frame):
    frame["D508"] = frame["D508"].astype(float)
    frame.loc[4, "D508"] = np.nan
    return frame


CASES = {
    "missing_column": (
        lambda f: f.drop(columns=["purchase"]),
        {},
        "expect_column_to_exist on column 'purchase': column missing",
    ),
    "label_of_two": (
        _label_two,
        {},
        "expect_column_values_to_be_in_set on column 'click': 1 of 100 rows "
        "outside {0, 1} (e.g. 2)",
    ),
    "purchase_without_click_hard": (
        _purchase_without_click,
        {"source_overrides": {"ali_ccp": {"purchase_implies_click": "hard"}}},
        "expect_column_pair_values_a_to_be_greater_than_b on columns 'click' and "
        "'purchase': 3 of 100 rows with purchase = 1 but click = 0",
    ),
    "nan_dense": (
        _nan_dense,
        {},
        "expect_column_values_to_not_be_null on column 'D508': 1 of 100 rows NaN "
        "or missing",
    ),
    "empty_file": (
        lambda f: f.iloc[:0],
        {},
        "expect_table_row_count_to_be_between: the table has 0 rows (at least 1 "
        "required)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_stops_the_run_with_a_clear_error(project, case):
    corrupt, validation, expected = CASES[case]
    before = snapshot(project)
    old_report = json.loads((project / REPORT).read_text())
    assert old_report["success"] is True
    csv = project / "data" / "01_raw" / f"{case}.csv"
    corrupt(ali_ccp_frame(100)).to_csv(csv, index=False)

    with pytest.raises(DataValidationError) as err:
        run_session(project, params(project, csv, **validation))

    message = str(err.value)
    assert message.startswith(f"validation failed for source 'ali_ccp' (file {csv}): ")
    assert expected in message
    # the report of the failed run is kept for inspection ...
    report = json.loads(written_by_failed_run(project, REPORT).read_text())
    assert report["success"] is False and report["hard_failures"] >= 1
    assert report["inputs"] == [str(csv)]
    assert any(expected in c["message"] for c in report["checks"])
    assert "**FAILED**" in written_by_failed_run(project, SUMMARY).read_text()
    # ... and nothing current changed: the good run's report and artefacts stay
    assert json.loads((project / REPORT).read_text()) == old_report
    assert snapshot(project) == before


def test_purchase_without_click_is_soft_by_default_and_dropped(project):
    csv = project / "data" / "01_raw" / "noisy.csv"
    _purchase_without_click(ali_ccp_frame(100)).to_csv(csv, index=False)
    run_session(project, params(project, csv))
    report = json.loads((project / REPORT).read_text())
    assert report["success"] is True and report["soft_failures"] == 1
    labels = json.loads((project / "data/08_reporting/label_report.json").read_text())
    assert labels["dropped"]["purchase_without_click"] == 3
    assert labels["rows_in"] == 100 and labels["rows_out"] == 97
    split = json.loads((project / "data/08_reporting/split_report.json").read_text())
    assert split["rows"] == 97


def test_zero_byte_file_is_a_clear_source_error(project):
    csv = project / "data" / "01_raw" / "zero.csv"
    csv.write_bytes(b"")
    before = snapshot(project)
    with pytest.raises(Exception, match=r"ali_ccp: .*is empty \(0 bytes\)"):
        run_session(project, params(project, csv))
    assert snapshot(project) == before


@pytest.mark.parametrize(
    ("runtime_params", "hint"),
    [
        ({"encoding": {"min_cont": 3}}, "did you mean 'min_count'"),
        ({"sources": {"simulated": {"n_rowz": 3}}}, "did you mean 'n_rows'"),
        ({"split": {"ratio": {}}}, "did you mean 'ratios'"),
    ],
)
def test_misspelt_parameter_fails_before_any_node_runs(project, runtime_params, hint):
    raw = project / "data/02_intermediate/raw_events.parquet"
    mtime = raw.stat().st_mtime_ns
    with pytest.raises(Exception, match=hint):
        run_session(project, runtime_params)
    assert raw.stat().st_mtime_ns == mtime


def written_by_failed_run(project: Path, rel: str) -> Path:
    """Where the latest failed run left ``rel`` (it never becomes current).

    The run guard stages every output; a failed run's files are moved to
    ``data/failed_runs/<run id>/outputs/`` instead of into place.
    """
    kept = sorted((project / "data" / "failed_runs").glob("*/outputs"))
    assert kept, "the failed run left no outputs under data/failed_runs"
    return kept[-1] / rel.removeprefix("data/")


def test_header_only_train_file_fails_validation_naming_it(project):
    raw = project / "data" / "01_raw"
    frame = ali_ccp_frame(100)
    files = {split: raw / f"{split}_split.csv" for split in ("train", "valid", "test")}
    frame.iloc[:0].to_csv(files["train"], index=False)  # header, no rows
    frame.iloc[:60].to_csv(files["valid"], index=False)
    frame.iloc[60:].to_csv(files["test"], index=False)
    before = snapshot(project)
    use_source_files(project, "ali_ccp", files)
    runtime = {"dataset": "ali_ccp"}

    with pytest.raises(DataValidationError) as err:
        run_session(project, runtime)

    expected = (
        f"expect_table_row_count_to_be_between: input file {files['train']} "
        "(split 'train') has 0 rows (at least 1 required)"
    )
    message = str(err.value)
    assert message.startswith("validation failed for source 'ali_ccp' (files ")
    assert message.endswith(f": {expected}")  # the only failure
    report = json.loads(written_by_failed_run(project, REPORT).read_text())
    assert report["split_rows"] == {"valid": 60, "test": 40}
    assert report["input_splits"] == {k: str(v) for k, v in files.items()}
    assert [c["message"] for c in report["checks"] if not c["success"]] == [expected]
    summary = written_by_failed_run(project, SUMMARY).read_text()
    assert f"- [HARD] `row_count`: {expected}" in summary
    raw_schema = written_by_failed_run(project, "data/02_intermediate/raw_schema.json")
    assert json.loads(raw_schema.read_text())["input_splits"] == report["input_splits"]
    assert snapshot(project) == before


def test_header_only_train_file_with_soft_row_count_fails_in_fit_encoder(project):
    raw = project / "data" / "01_raw"
    frame = ali_ccp_frame(100)
    files = {split: raw / f"{split}_split.csv" for split in ("train", "valid", "test")}
    frame.iloc[:0].to_csv(files["train"], index=False)
    frame.iloc[:60].to_csv(files["valid"], index=False)
    frame.iloc[60:].to_csv(files["test"], index=False)
    use_source_files(project, "ali_ccp", files)
    runtime = {"dataset": "ali_ccp", "validation": {"rules": {"row_count": "soft"}}}
    # a soft row count only warns; the empty train split then stops the run
    # in fit_encoder, whose message names the parquet file of the train split
    with pytest.raises(
        EncoderError,
        match=r"empty train split \(\S+/03_primary/train\.parquet has 0 rows\)$",
    ):
        run_session(project, runtime)
