"""Temporary copies of the project for pipeline-level data-processing tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DATA_LAYERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
)


def copy_project(target: Path, with_src: bool = False) -> Path:
    """Copy conf, pyproject and the telemetry answer (not data, .venv or .git)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        PROJECT_ROOT / "conf",
        target / "conf",
        ignore=shutil.ignore_patterns("local"),
    )
    (target / "conf" / "local").mkdir(exist_ok=True)
    for name in ("pyproject.toml", ".telemetry"):
        if (PROJECT_ROOT / name).exists():
            shutil.copy2(PROJECT_ROOT / name, target / name)
    if with_src:
        shutil.copytree(
            PROJECT_ROOT / "src",
            target / "src",
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    else:
        (target / "src").mkdir(exist_ok=True)
    for layer in DATA_LAYERS:
        (target / "data" / layer).mkdir(parents=True, exist_ok=True)
    return target


def ali_ccp_frame(n: int = 100, seed: int = 0) -> pd.DataFrame:
    """Clean rows in Ali-CCP's processed format (purchase only after click)."""
    from mtl_reco.sources.ali_ccp import DENSE, SPARSE

    rng = np.random.default_rng(seed)
    click = (rng.random(n) < 0.3).astype(int)
    cols: dict[str, Any] = {
        "click": click,
        "purchase": click * (rng.random(n) < 0.3).astype(int),
    }
    for col in SPARSE:
        cols[col] = rng.integers(1, 8, n)
    for col in DENSE:
        cols[col] = np.round(rng.random(n), 4)
    return pd.DataFrame(cols)


@pytest.fixture
def isolated_mlflow(tmp_path_factory, monkeypatch):
    """Keep the kedro-mlflow plugin's tracking store inside a temporary folder."""
    store = tmp_path_factory.mktemp("mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    return store


def run_session(
    project: Path,
    runtime_params: dict[str, Any] | None = None,
    env: str = "test",
    pipeline: str = "data_processing",
) -> dict[str, Any]:
    """Run a pipeline of the project copy in this process (a real KedroSession).

    Plugin hooks (kedro-mlflow) are left out here: they keep process-wide
    MLflow state between sessions. The CLI end-to-end test runs with them.
    """
    from kedro.framework.project import configure_project, settings
    from kedro.framework.session import KedroSession

    configure_project("mtl_reco")
    settings.set("DISABLE_HOOKS_FOR_PLUGINS", ("kedro_mlflow",))
    with KedroSession.create(
        project_path=project, env=env, runtime_params=runtime_params
    ) as session:
        return session.run(pipeline_name=pipeline)
