"""Select a source by name: the one entry point the pipelines call.

>>> schema, table = read_source("simulated", {"n_rows": 1000, "seed": 7})
>>> for chunk in table.iter_chunks(chunk_rows=256):
...     ...

``read_source`` is lazy: it validates the options, checks that input files
exist and are not empty, and returns the :class:`~mtl_reco.sources.base.RawSchema`
with a re-iterable, chunked :class:`~mtl_reco.tables.Table`; rows are only
read (or generated) while the table is iterated, one chunk at a time.

Every source module registers itself below with its options class (a
:class:`~mtl_reco.typed_config.StrictConfig`, so a misspelt option raises
:class:`~mtl_reco.typed_config.ConfigError` with a suggestion) and its reader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mtl_reco.sources.ali_ccp import AliCcpOptions, read_ali_ccp
from mtl_reco.sources.ali_ccp_raw import AliCcpRawOptions, read_ali_ccp_raw
from mtl_reco.sources.aliexpress import AliExpressOptions, read_aliexpress
from mtl_reco.sources.base import RawSchema, SourceError
from mtl_reco.sources.census_income import CensusIncomeOptions, read_census_income
from mtl_reco.sources.simulated import SimulatedOptions, read_simulated
from mtl_reco.tables import Table
from mtl_reco.typed_config import ConfigError, StrictConfig


@dataclass(frozen=True)
class SourceSpec:
    """A registered source: its options class and its (lazy) reader."""

    options: type[StrictConfig]
    read: Callable[[Any], tuple[RawSchema, Table]]


_SOURCES: dict[str, SourceSpec] = {
    "simulated": SourceSpec(SimulatedOptions, read_simulated),
    "census_income": SourceSpec(CensusIncomeOptions, read_census_income),
    "ali_ccp": SourceSpec(AliCcpOptions, read_ali_ccp),
    "ali_ccp_raw": SourceSpec(AliCcpRawOptions, read_ali_ccp_raw),
    "aliexpress": SourceSpec(AliExpressOptions, read_aliexpress),
}


def available_sources() -> list[str]:
    """Names accepted by :func:`read_source`, sorted."""
    return sorted(_SOURCES)


def _spec(name: str) -> SourceSpec:
    try:
        return _SOURCES[name]
    except (KeyError, TypeError):
        raise SourceError(
            f"unknown source {name!r}; choose one of {', '.join(available_sources())}"
        ) from None


def options_class(name: str) -> type[StrictConfig]:
    """The typed options class of source ``name``.

    Raises:
        SourceError: ``name`` is not a registered source.
    """
    return _spec(name).options


def read_source(
    name: str, options: Mapping[str, Any] | StrictConfig | None = None
) -> tuple[RawSchema, Table]:
    """Open source ``name`` lazily and return its schema and chunked table.

    Args:
        name: One of :func:`available_sources`.
        options: The source's options as a mapping (validated strictly), an
            instance of its options class, or ``None`` for the defaults.

    Raises:
        SourceError: Unknown source, or an input file missing or empty.
        ConfigError: Unknown or ill-typed option.
    """
    spec = _spec(name)
    if options is None:
        opts = spec.options()
    elif isinstance(options, spec.options):
        opts = options
    elif isinstance(options, StrictConfig):
        raise ConfigError(
            f"source {name!r} expects {spec.options.__name__}, "
            f"got {type(options).__name__}"
        )
    elif isinstance(options, Mapping):
        opts = spec.options.from_dict(options)
    else:
        raise ConfigError(
            f"options for source {name!r} must be a mapping, "
            f"got {type(options).__name__}"
        )
    return spec.read(opts)
