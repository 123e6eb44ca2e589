"""Temporary copies of the project for pipeline-level data-processing tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ..conftest import DATA_LAYERS, PROJECT_ROOT, copy_project

__all__ = ["DATA_LAYERS", "PROJECT_ROOT", "copy_project"]


def ali_ccp_frame(n: int = 100, seed: int = 0) -> pd.DataFrame:
    """Clean rows in Ali-CCP's processed format (purchase only after click)."""
    from mtl_reco.sources.registry import processed_format

    ali_ccp = processed_format("ali_ccp")

    rng = np.random.default_rng(seed)
    click = (rng.random(n) < 0.3).astype(int)
    cols: dict[str, Any] = {
        "click": click,
        "purchase": click * (rng.random(n) < 0.3).astype(int),
    }
    for col in ali_ccp.sparse:
        cols[col] = rng.integers(1, 8, n)
    for col in ali_ccp.dense:
        cols[col] = np.round(rng.random(n), 4)
    return pd.DataFrame(cols)


@pytest.fixture
def isolated_mlflow(tmp_path_factory, monkeypatch):
    """Keep any MLflow tracking store inside a temporary folder."""
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

    Plugin hooks are left out here (they may keep process-wide state between
    sessions); the CLI end-to-end tests run with everything.
    """
    from kedro.framework.project import configure_project, settings
    from kedro.framework.session import KedroSession

    configure_project("mtl_reco")
    settings.set("DISABLE_HOOKS_FOR_PLUGINS", ("kedro_mlflow",))
    with KedroSession.create(
        project_path=project, env=env, runtime_params=runtime_params
    ) as session:
        return session.run(pipeline_name=pipeline)
