"""Catalog and parameters of the data_processing pipeline, as Kedro loads them."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader

from mtl_reco import settings
from mtl_reco.pipelines.data_processing import create_pipeline
from mtl_reco.processing.config import (
    EncodingConfig,
    LabelsConfig,
    SourcesConfig,
    SplitConfig,
    ValidationConfig,
)
from mtl_reco.sources.registry import file_sources

from .conftest import PROJECT_ROOT

TYPED = {
    "sources": SourcesConfig,
    "validation": ValidationConfig,
    "labels": LabelsConfig,
    "split": SplitConfig,
    "encoding": EncodingConfig,
}


def loader(env: str, runtime_params=None) -> OmegaConfigLoader:
    return OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"),
        env=env,
        runtime_params=runtime_params,
        **settings.CONFIG_LOADER_ARGS,
    )


def test_every_dataset_of_the_pipeline_is_declared_in_the_catalog():
    catalog = loader("base")["catalog"]
    datasets = {d for d in create_pipeline().datasets() if not d.startswith("params:")}
    assert datasets - set(catalog) == set()
    for name in datasets:
        entry = catalog[name]
        if name.endswith("_files"):  # a source's raw input files
            assert entry["type"] == "mtl_reco.datasets.SourceFilesDataset", name
            assert entry["metadata"]["kedro-viz"]["layer"] == "raw", name
            continue
        assert entry["filepath"].startswith("data/0"), name
    # every source that reads files (a format description or a reader
    # module): its files are a catalog entry
    sources = {d.removesuffix("_files") for d in datasets if d.endswith("_files")}
    assert sources == set(file_sources())
    assert {"census_income", "ali_ccp", "ali_ccp_raw", "aliexpress"} <= sources


@pytest.mark.parametrize("env", ["base", "test"])
def test_parameters_build_the_typed_configs(env):
    params = loader(env)["parameters"]
    assert params["dataset"] == "simulated"
    for key, cls in TYPED.items():
        cls.from_dict(params[key])
    sources = SourcesConfig.from_dict(params["sources"])
    assert sources.for_source("simulated").n_rows == (
        500_000 if env == "base" else 5000
    )


def test_shared_data_paths_follow_the_environment_variable(monkeypatch):
    monkeypatch.delenv("MTL_RECO_SHARED_DATA", raising=False)
    files = loader("base")["catalog"]["census_income_files"]["files"]
    assert files["path"].startswith("../shared/data/census-income-kdd/")
    monkeypatch.setenv("MTL_RECO_SHARED_DATA", "/elsewhere")
    catalog = loader("base")["catalog"]
    assert catalog["census_income_files"]["files"]["path"].startswith(
        "/elsewhere/census-income-kdd/"
    )
    assert catalog["ali_ccp_files"]["files"]["train"].startswith("/elsewhere/ali-ccp/")


def test_parameters_name_no_input_file():
    """Files are catalog entries (``<source>_files``), not parameters."""
    for env in ("base", "test", "census_income", "ali_ccp", "aliexpress"):
        sources = loader(env)["parameters"]["sources"]
        for source, block in sources.items():
            given = {"path", "paths", "train", "valid", "test", "directory"}
            assert not given & set(block or {}), (env, source)


def test_dataset_switch_is_one_runtime_parameter():
    params = loader("base", {"dataset": "census_income"})["parameters"]
    assert params["dataset"] == "census_income"
    assert params["sources"]["simulated"]["n_rows"] == 500_000  # untouched
