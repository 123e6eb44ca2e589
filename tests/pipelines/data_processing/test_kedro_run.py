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


TOY_FORMAT = """\
description: a toy view -> share funnel
labels: [view, share]
sparse: [user, item_1..2]
dense: [score]
extras: [ts]
funnel: [view, share]
default_tasks:
  - {name: vtr, source: view}
  - {name: vsr, source: view * share}
"""


def toy_share_files(folder: Path) -> dict[str, str]:
    """Train/valid/test CSVs of the toy format (a learnable view -> share funnel)."""
    rng = np.random.default_rng(3)
    files = {}
    for split, n in (("train", 400), ("valid", 100), ("test", 100)):
        user = rng.integers(1, 30, n)
        view = (rng.random(n) < 0.2 + 0.02 * (user % 10)).astype(int)
        share = view * (rng.random(n) < 0.3).astype(int)
        lines = ["view,share,user,item_1,item_2,score,ts"]
        for i in range(n):
            lines.append(
                f"{view[i]},{share[i]},{user[i]},{rng.integers(1, 9)},"
                f"{rng.integers(1, 5)},{rng.normal():.4f},{1000 + i}"
            )
        path = folder / f"toy_{split}.csv"
        path.write_text("\n".join(lines) + "\n")
        files[split] = str(path)
    return files


@pytest.mark.slow
def test_a_described_format_end_to_end(tmp_path):
    """Two files: the format description and the catalog entry of its files."""
    project = copy_project(tmp_path / "project", with_src=True)
    formats = project / "src" / "mtl_reco" / "sources" / "formats"
    (formats / "toy_share.yml").write_text(TOY_FORMAT)
    use_source_files(project, "toy_share", toy_share_files(tmp_path))
    kedro_run(project, "--params", "dataset=toy_share")
    for rel in ARTEFACTS:
        assert (project / rel).is_file(), rel
    validation = load(project, "data/08_reporting/validation/validation_report.json")
    assert validation["success"] and validation["source"] == "toy_share"
    assert validation["rows"] == 600
    assert validation["suite"]["name"] == "raw_events.toy_share"
    raw_schema = load(project, "data/02_intermediate/raw_schema.json")
    assert raw_schema["input_splits"] == {
        s: str(tmp_path / f"toy_{s}.csv") for s in ("train", "valid", "test")
    }
    split = load(project, "data/08_reporting/split_report.json")
    assert {k: v["rows"] for k, v in split["splits"].items()} == {
        "train": 400,
        "valid": 100,
        "test": 100,
    }
    schema = FeatureSchema.from_dict(
        load(project, "data/05_model_input/feature_schema.json")
    )
    assert schema.task_names == ["vtr", "vsr"]
    assert schema.funnel == Funnel("vtr", "vsr")
    assert schema.sparse_names == ["user", "item_1", "item_2"]
    assert schema.dense_names == ["score"] and schema.extras == ("ts",)
    check_encoded(project, schema)
