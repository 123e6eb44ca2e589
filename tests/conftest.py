"""Shared test fixtures.

Real data lives beside the checkout in ``../shared/data`` (override with
``MTL_RECO_SHARED_DATA``). Tests that read it use the ``shared_data`` fixture:
when the folder is absent they are skipped with that reason, unless
``MTL_RECO_REQUIRE_SHARED_DATA=1`` (set by ``.ci/run``), in which case they
fail, so CI can never go green by skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Folder of the real datasets (may not exist on a fresh checkout)."""
    env = os.environ.get("MTL_RECO_SHARED_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        if os.environ.get("MTL_RECO_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(
                f"real data folder {path} is required (MTL_RECO_REQUIRE_SHARED_DATA=1)"
            )
        pytest.skip(f"real data folder {path} not present")
    return path


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Deselect ``gpu`` tests on machines without CUDA (reported, not hidden)."""
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def _mlflow_store_left_as_found():
    """Undo what a test's in-process MLflow calls leave in the process.

    ``mlflow.set_tracking_uri`` / ``set_registry_uri`` (called by tests and by
    kedro-mlflow inside an in-process ``KedroSession``) keep the URI in a
    module global *and* export it as an environment variable, so a later test
    in the same pytest worker would read another test's store, and the
    ``kedro run`` subprocesses it starts would register models there.
    """
    saved_env = {name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES}
    yield
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
