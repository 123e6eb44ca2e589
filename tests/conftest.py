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
