"""Selecting sources by name; options checked strictly; reading is lazy."""

from __future__ import annotations

import pytest

from mtl_reco.sources.base import SourceError
from mtl_reco.sources.registry import available_sources, options_class, read_source
from mtl_reco.sources.simulated import SimulatedOptions
from mtl_reco.tables import Table
from mtl_reco.typed_config import ConfigError, StrictConfig


def test_available_sources() -> None:
    assert available_sources() == sorted(
        ["simulated", "census_income", "ali_ccp", "ali_ccp_raw", "aliexpress"]
    )
    for name in available_sources():
        cls = options_class(name)
        assert issubclass(cls, StrictConfig)
        assert isinstance(cls(), cls)  # defaults construct


def test_unknown_source_lists_choices() -> None:
    with pytest.raises(SourceError, match="unknown source 'simulatd'") as info:
        read_source("simulatd")
    assert "simulated" in str(info.value) and "census_income" in str(info.value)
    with pytest.raises(SourceError, match="choose one of"):
        options_class("nope")


def test_misspelt_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="did you mean 'n_rows'"):
        read_source("simulated", {"n_row": 10})
    with pytest.raises(ConfigError, match="expects SimulatedOptions"):
        read_source("simulated", options_class("census_income")())


def test_options_forms() -> None:
    for options in (None, {"n_rows": 10}, SimulatedOptions(n_rows=10)):
        schema, table = read_source("simulated", options)
        assert schema.source == "simulated"
        assert isinstance(table, Table)
