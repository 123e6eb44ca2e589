"""Typed data-processing parameters fail early and helpfully."""

from __future__ import annotations

import pytest

from mtl_reco.processing.config import (
    EncodingConfig,
    FunnelConfig,
    LabelsConfig,
    SourcesConfig,
    SplitConfig,
    ValidationConfig,
)
from mtl_reco.sources.registry import available_sources
from mtl_reco.sources.simulated import SimulatedOptions
from mtl_reco.typed_config import ConfigError


def test_sources_config_has_one_block_per_registered_source():
    cfg = SourcesConfig(simulated={"n_rows": 10, "seed": 3})
    assert isinstance(cfg.simulated, SimulatedOptions)
    assert cfg.for_source("simulated").n_rows == 10
    for name in available_sources():
        assert hasattr(cfg, name)
    assert cfg.for_source("census_income") is not None  # defaults


def test_misspelt_source_or_option_is_reported():
    with pytest.raises(ConfigError, match="did you mean 'simulated'"):
        SourcesConfig(simulatd={"n_rows": 10})
    with pytest.raises(
        ConfigError, match=r"unknown key 'n_rowz'.*did you mean 'n_rows'"
    ):
        SourcesConfig(simulated={"n_rowz": 10})


def test_misspelt_stage_keys():
    with pytest.raises(ConfigError, match="did you mean 'min_count'"):
        EncodingConfig.from_dict({"min_cont": 3})
    with pytest.raises(ConfigError, match="did you mean 'labels_binary'"):
        ValidationConfig.from_dict({"rules": {"label_binary": "hard"}})
    with pytest.raises(
        ConfigError, match=r"unknown rule 'dense_finit'.*'dense_finite'"
    ):
        ValidationConfig.from_dict({"source_overrides": {"x": {"dense_finit": "soft"}}})
    with pytest.raises(ConfigError, match="not one of 'hard', 'soft', 'off'"):
        ValidationConfig.from_dict({"rules": {"row_count": "maybe"}})


def test_severity_overrides_per_source():
    cfg = ValidationConfig.from_dict(
        {"source_overrides": {"census_income": {"dense_finite": "soft"}}}
    )
    assert cfg.severities("census_income").dense_finite == "soft"
    assert cfg.severities("simulated").dense_finite == "hard"
    assert cfg.severities("census_income").labels_binary == "hard"


def test_split_and_encoding_values_are_checked():
    with pytest.raises(ConfigError, match="sum to 1"):
        SplitConfig.from_dict({"ratios": {"train": 0.8, "valid": 0.3, "test": 0.1}})
    with pytest.raises(ConfigError, match="dense_scaling"):
        EncodingConfig.from_dict({"dense_scaling": "zscore"})
    with pytest.raises(ConfigError, match="min_count"):
        EncodingConfig.from_dict({"min_count": 0})
    assert (
        EncodingConfig.from_dict(
            {"dense_scaling_overrides": {"a": "log1p"}}
        ).scaling_for("a")
        == "log1p"
    )


def test_labels_funnel_forms():
    assert LabelsConfig.from_dict({"funnel": "none"}).funnel == "none"
    explicit = LabelsConfig.from_dict(
        {"funnel": {"click": "ctr", "conversion": "ctcvr"}}
    )
    assert explicit.funnel == FunnelConfig(click="ctr", conversion="ctcvr")
    with pytest.raises(ConfigError, match="duplicate task names"):
        LabelsConfig.from_dict(
            {
                "tasks": [
                    {"name": "a", "source": "click"},
                    {"name": "a", "source": "purchase"},
                ]
            }
        )
    with pytest.raises(ConfigError):
        LabelsConfig.from_dict(
            {"tasks": [{"name": "a", "source": "click", "type": "rank"}]}
        )
