"""One intra-op thread for every weighting test (the shared ``single_thread``
fixture of ``tests/modeling/conftest.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread: None) -> None:
    """Every test here runs with ``single_thread``."""
