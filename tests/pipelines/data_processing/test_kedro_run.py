"""`kedro run --pipeline=data_processing --env test` end to end (CLI, subprocess)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mtl_reco.schema import FeatureSchema, Funnel

from ..conftest import use_source_files
from .conftest import copy_project

KEDRO = Path(sys.executable).with_name("kedro")

ARTEFACTS = (
    "data/02_intermediate/raw_events.parquet",
    "data/02_intermediate/raw_schema.json",
    "data/08_reporting/validation/validation_report.json",
    "data/08_reporting/validation/validation_summary.md",
    "data/08_reporting/validation/validation_status.json",
    "data/03_primary/labelled_events.parquet",
    "data/03_primary/task_spec.json",
    "data/08_reporting/label_report.json",
    "data/03_primary/train.parquet",
    "data/03_primary/valid.parquet",
    "data/03_primary/test.parquet",
    "data/03_primary/split_plan.json",
    "data/08_reporting/split_report.json",
    "data/04_feature/feature_encoder.json",
    "data/05_model_input/encoded_train.parquet",
    "data/05_model_input/encoded_valid.parquet",
    "data/05_model_input/encoded_test.parquet",
    "data/05_model_input/feature_schema.json",
    "data/08_reporting/encoding_report.json",
)


def kedro_run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "MLFLOW_TRACKING_URI": (project / "mlruns").as_uri(),
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "COLUMNS": "200",
    }
    proc = subprocess.run(
        [str(KEDRO), "run", "--pipeline=data_processing", "--env", "test", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def load(project: Path, rel: str):
    return json.loads((project / rel).read_text())


def check_encoded(project: Path, schema: FeatureSchema) -> dict[str, int]:
    rows = {}
    for split in ("train", "valid", "test"):
        table = pq.read_table(project / f"data/05_model_input/encoded_{split}.parquet")
        rows[split] = table.num_rows
        expected = [*schema.sparse_names, *schema.dense_names, *schema.task_names]
        assert table.column_names[: len(expected)] == expected
        assert table.column_names[len(expected) :] == list(schema.extras)
        for feat in schema.sparse:
            ids = table[feat.name].to_numpy()
            assert table.schema.field(feat.name).type == "int32"
            assert ids.min() >= 0 and ids.max() < feat.cardinality
        for name in (*schema.dense_names, *schema.task_names):
            assert table.schema.field(name).type == "float"
            assert np.isfinite(table[name].to_numpy()).all()
    return rows


@pytest.mark.slow
def test_simulated_end_to_end(tmp_path):
    project = copy_project(tmp_path / "project", with_src=True)
    kedro_run(project)
    for rel in ARTEFACTS:
        assert (project / rel).is_file(), rel
    assert pq.read_metadata(project / ARTEFACTS[0]).num_rows == 5000

    validation = load(project, "data/08_reporting/validation/validation_report.json")
    assert validation["success"] and validation["rows"] == 5000
    assert validation["chunks"] == 3  # conf/test: 2000-row chunks
    labels = load(project, "data/08_reporting/label_report.json")
    assert labels["rows_in"] == labels["rows_out"] == 5000
    ctr, ctcvr = labels["tasks"]
    assert 0.02 < ctr["positive_rate"] < 0.07
    assert 0 < ctcvr["positive_rate"] < ctr["positive_rate"]

    split = load(project, "data/08_reporting/split_report.json")
    shares = {k: v["share"] for k, v in split["splits"].items()}
    assert shares["train"] == pytest.approx(0.8, abs=0.03)
    assert shares["valid"] == pytest.approx(0.1, abs=0.03)
    assert split["rows"] == 5000

    schema = FeatureSchema.from_dict(
        load(project, "data/05_model_input/feature_schema.json")
    )
    assert schema.task_names == ["ctr", "ctcvr"]
    assert schema.funnel == Funnel("ctr", "ctcvr")
    assert len(schema.sparse) == 23 and len(schema.dense) == 8
    assert schema.extras == ("true_pctr", "true_pcvr", "true_pctcvr", "day")
    assert all(f.cardinality > 1 for f in schema.sparse)
    rows = check_encoded(project, schema)
    assert rows == {k: v["rows"] for k, v in split["splits"].items()}
    encoder = load(project, "data/04_feature/feature_encoder.json")
    assert encoder["fitted_rows"] == rows["train"]
    train = pq.read_table(project / "data/05_model_input/encoded_train.parquet")
    dense = train.select(list(schema.dense_names)).to_pandas()
    assert np.abs(dense.mean()).max() < 1e-3  # standard scaling, fitted on train
    assert "PASSED" in (project / ARTEFACTS[3]).read_text()


@pytest.mark.slow
def test_census_income_end_to_end(tmp_path, shared_data):
    raw = shared_data / "census-income-kdd/uci-raw/census_income_1994_1995_train.csv.gz"
    sample = tmp_path / "census_sample.data"
    with gzip.open(raw, "rt") as src, sample.open("w") as dst:
        for _, line in zip(range(3000), src, strict=False):
            dst.write(line)
    project = copy_project(tmp_path / "project", with_src=True)
    # the source's file is a catalog entry; a file:// URL reads like a path
    use_source_files(project, "census_income", {"path": sample.as_uri()})
    kedro_run(project, "--params", "dataset=census_income")
    for rel in ARTEFACTS:
        assert (project / rel).is_file(), rel
    validation = load(project, "data/08_reporting/validation/validation_report.json")
    assert validation["source"] == "census_income" and validation["rows"] == 3000
    assert validation["inputs"] == [str(sample)]
    labels = load(project, "data/08_reporting/label_report.json")
    assert labels["rows_out"] == 3000 and labels["funnel"] is None
    rates = {t["name"]: t["positive_rate"] for t in labels["tasks"]}
    assert set(rates) == {"income", "marital"}
    assert 0.02 < rates["income"] < 0.15 and 0.3 < rates["marital"] < 0.6
    schema = FeatureSchema.from_dict(
        load(project, "data/05_model_input/feature_schema.json")
    )
    assert schema.funnel is None and schema.extras == ("instance_weight",)
    assert "instance_weight" not in schema.dense_names
    check_encoded(project, schema)
    encoder = load(project, "data/04_feature/feature_encoder.json")
    kinds = {v["name"]: v["kind"] for v in encoder["sparse"]}
    assert kinds["education"] == "str"
