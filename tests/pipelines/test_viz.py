"""`kedro viz build` offline: layers, the data_processing and experiment namespaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import copy_project, project_experiments

KEDRO = str(Path(sys.executable).with_name("kedro"))
pytestmark = pytest.mark.slow  # about 10 s: one kedro-viz build
EXPERIMENTS = project_experiments()

LAYERS = [
    "raw",
    "intermediate",
    "primary",
    "feature",
    "model_input",
    "models",
    "model_output",
    "reporting",
]
DATA_PROCESSING_NODES = {
    "ingest_source",
    "validate_raw_events",
    "check_validation",
    "engineer_labels",
    "split_events",
    "report_split",
    "fit_encoder",
    "encode_train",
    "encode_valid",
    "encode_test",
    "build_feature_schema",
    "report_encoding",
}


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    project = copy_project(tmp_path_factory.mktemp("viz") / "project")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    proc = subprocess.run(
        [KEDRO, "viz", "build"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    main = json.loads((project / "build" / "api" / "main").read_text())
    return main, output, project


def test_build_is_offline_and_lists_every_pipeline(build):
    main, _, project = build
    assert (project / "build" / "index.html").is_file()
    ids = {p["id"] for p in main["pipelines"]}
    assert {f"train_{e}" for e in EXPERIMENTS} | {
        "__default__",
        "data_processing",
        "compare",
        "score",
    } <= ids


def test_layers_are_shown_in_the_standard_order(build):
    main, output, _ = build
    assert "circular dependency" not in output.lower()
    assert main["layers"] == LAYERS


def test_data_processing_is_one_collapsible_namespace(build):
    main, _, _ = build
    modular = main["modular_pipelines"]
    assert "data_processing" in modular
    names = {n["id"]: n["name"] for n in main["nodes"]}
    tasks = {
        names[child["id"]]
        for child in modular["data_processing"]["children"]
        if child["type"] == "task"
    }
    assert tasks == DATA_PROCESSING_NODES
    full = {
        n["full_name"]
        for n in main["nodes"]
        if n["type"] == "task" and n["name"] in tasks
    }
    assert full == {f"data_processing.{t}" for t in DATA_PROCESSING_NODES}
    # datasets keep their names: no data_processing.raw_events
    datasets = {n["name"] for n in main["nodes"] if n["type"] == "data"}
    assert {"raw_events", "feature_schema", "encoded_train"} <= datasets
    assert not any(d.startswith("data_processing.") for d in datasets)


def test_experiments_are_namespaces(build):
    main, _, _ = build
    assert set(EXPERIMENTS) <= set(main["modular_pipelines"])
