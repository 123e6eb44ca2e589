"""Temporary copies of the project for pipeline-level tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

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


def project_params(env: str = "base", project: Path = PROJECT_ROOT) -> dict:
    """A project's parameters in ``env`` as Kedro loads them (``base``: base only)."""
    from kedro.config import OmegaConfigLoader

    from mtl_reco import settings

    loader = OmegaConfigLoader(
        conf_source=str(project / "conf"), env=env, **settings.CONFIG_LOADER_ARGS
    )
    return dict(loader["parameters"])


def project_experiments(env: str = "base", project: Path = PROJECT_ROOT) -> list[str]:
    """The experiments of a project's parameters in ``env``.

    The parameters are the one list of experiments: every top-level block
    with ``model`` and ``weighting``.
    """
    from mtl_reco.experiment import experiment_names

    return experiment_names(project_params(env, project))


@pytest.fixture(autouse=True)
def _session_parameters_forgotten():
    """A session records its parameters process-wide (they pick the experiments
    the registry builds); forget them after each test, so a later test that
    builds the pipelines without a session reads the project's own."""
    yield
    if "mtl_reco.preflight" in sys.modules:
        sys.modules["mtl_reco.preflight"].forget_parameters()


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


def use_source_files(
    project: Path, source: str, files: str | Path | dict, env: str = "test"
) -> None:
    """Point the catalog entry ``<source>_files`` of a project copy at ``files``.

    ``files`` is one location (the source's ``path``) or a mapping of the
    source's file options to locations (paths or fsspec URLs). The entry is
    written to ``conf/<env>/catalog_source_files.yml`` of the copy (the
    environment the test runs in: ``conf/local`` is not read with ``--env``).
    """
    import yaml

    def text(value):
        if isinstance(value, dict):
            return {k: text(v) for k, v in value.items()}
        return None if value is None else str(value)

    path = project / "conf" / env / "catalog_source_files.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    entries[f"{source}_files"] = {
        "type": "mtl_reco.datasets.SourceFilesDataset",
        "files": text(files),
    }
    path.write_text(yaml.safe_dump(entries, sort_keys=False))
