"""Temporary copies of the project for pipeline-level tests."""

from __future__ import annotations

import shutil
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
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
    """Copy conf, pyproject and the telemetry answer (not data, .venv or .git).

    Without ``with_src`` the copy runs the installed ``mtl_reco`` package.
    """
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        PROJECT_ROOT / "conf", target / "conf", ignore=shutil.ignore_patterns("local")
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
