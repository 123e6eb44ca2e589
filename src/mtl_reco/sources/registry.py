"""Select a source by name: the one entry point the pipelines call.

>>> schema, table = read_source("simulated", {"n_rows": 1000, "seed": 7})
>>> for chunk in table.iter_chunks(chunk_rows=256):
...     ...

``read_source`` is lazy: it validates the options, checks that input files
exist and are not empty, and returns the :class:`~mtl_reco.sources.base.RawSchema`
with a re-iterable, chunked :class:`~mtl_reco.tables.Table`; rows are only
read (or generated) while the table is iterated, one chunk at a time.

Two kinds of sources are registered:

* **processed CSV formats** (``ali_ccp``, ``aliexpress``, ...): one YAML
  description each in :mod:`mtl_reco.sources.formats` (labels, sparse, dense
  and extra columns, funnel, default tasks), all read by the generic reader
  of :mod:`mtl_reco.sources._processed` with the same file options
  (:class:`~mtl_reco.sources._processed.ProcessedOptions`). Every
  ``formats/<name>.yml`` is a source; :func:`register_format` adds one from
  elsewhere;
* **sources that need code** (``simulated``, ``census_income``,
  ``ali_ccp_raw``): a module with its options class (a
  :class:`~mtl_reco.typed_config.StrictConfig`, so a misspelt option raises
  :class:`~mtl_reco.typed_config.ConfigError` with a suggestion) and its
  reader, listed in :data:`_CODE_SOURCES`.

Every source except the simulator reads files; those are the catalog entry
``<source>_files`` (:func:`file_sources`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import create_model

from mtl_reco.sources._processed import (
    ProcessedFormat,
    ProcessedOptions,
    load_format,
    read_format,
)
from mtl_reco.sources.ali_ccp_raw import AliCcpRawOptions, read_ali_ccp_raw
from mtl_reco.sources.base import RawSchema, SourceError
from mtl_reco.sources.census_income import CensusIncomeOptions, read_census_income
from mtl_reco.sources.formats import builtin_format_files
from mtl_reco.sources.simulated import SimulatedOptions, read_simulated
from mtl_reco.tables import Table
from mtl_reco.typed_config import ConfigError, StrictConfig


@dataclass(frozen=True)
class SourceSpec:
    """A registered source.

    Attributes:
        options: Its typed options class.
        read: Its (lazy) reader.
        reads_files: Whether it reads input files (then the catalog entry
            ``<source>_files`` names them).
        format: The processed-CSV format it reads, for a described source.
    """

    options: type[StrictConfig]
    read: Callable[[Any], tuple[RawSchema, Table]]
    reads_files: bool = True
    format: ProcessedFormat | None = None


_CODE_SOURCES: dict[str, SourceSpec] = {
    "simulated": SourceSpec(SimulatedOptions, read_simulated, reads_files=False),
    "census_income": SourceSpec(CensusIncomeOptions, read_census_income),
    "ali_ccp_raw": SourceSpec(AliCcpRawOptions, read_ali_ccp_raw),
}
"""Sources that need code (a reader module each)."""

_SOURCES: dict[str, SourceSpec] = dict(_CODE_SOURCES)


def format_source(fmt: ProcessedFormat) -> SourceSpec:
    """The source of a processed format: the generic reader, its options class."""
    what = fmt.description or "a processed CSV format"
    name = f"{fmt.title}Options"
    options = create_model(
        name,
        __base__=ProcessedOptions,
        __module__=__name__,
        __doc__=(
            f"Options of the ``{fmt.source}`` source ({what}): its files, "
            "``path`` or any of ``train``/``valid``/``test``."
        ),
    )
    globals().setdefault(name, options)  # importable by name: instances pickle
    return SourceSpec(options, functools.partial(read_format, fmt), format=fmt)


def register_format(fmt: ProcessedFormat | Path | str) -> str:
    """Register a processed format as a source (a description file or a format).

    The built-in descriptions (``mtl_reco/sources/formats/*.yml``) are
    registered on import; this adds one kept elsewhere.

    Returns:
        The source name.

    Raises:
        SourceError: A bad description, or the name of another source.
    """
    if not isinstance(fmt, ProcessedFormat):
        fmt = load_format(fmt)
    current = _SOURCES.get(fmt.source)
    if current is not None and current.format != fmt:
        raise SourceError(f"source {fmt.source!r} is already registered")
    _SOURCES[fmt.source] = format_source(fmt)
    return fmt.source


for _path in builtin_format_files().values():
    register_format(_path)


def available_sources() -> list[str]:
    """Names accepted by :func:`read_source`, sorted."""
    return sorted(_SOURCES)


def file_sources() -> list[str]:
    """Sources that read files (each has a ``<source>_files`` catalog entry), sorted."""
    return sorted(name for name, spec in _SOURCES.items() if spec.reads_files)


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


def processed_format(name: str) -> ProcessedFormat:
    """The column roles of the processed-CSV source ``name``.

    Raises:
        SourceError: ``name`` is not a registered source, or one that needs
            code rather than a format description.
    """
    fmt = _spec(name).format
    if fmt is None:
        raise SourceError(f"source {name!r} is not a processed CSV format")
    return fmt


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
