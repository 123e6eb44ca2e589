"""Ingestion helpers: open the chosen source and describe what was read.

A source's input files come from the catalog (``<source>_files`` entries,
see :class:`mtl_reco.datasets.SourceFilesDataset`), its other options from
the ``sources`` parameter block; :func:`source_options` merges the two into
the raw option mapping that :func:`mtl_reco.sources.registry.read_source`
validates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import fsspec

from mtl_reco.sources.base import RawSchema, SourceError
from mtl_reco.sources.registry import options_class, read_source
from mtl_reco.tables import Table
from mtl_reco.typed_config import plain

logger = logging.getLogger(__name__)


def source_options(
    dataset: str,
    sources: Mapping[str, Any] | Any | None,
    files: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The raw options of source ``dataset``: its parameter block plus its files.

    Args:
        dataset: Source name.
        sources: The ``sources`` parameter block (``{source: {option: value}}``,
            or its typed form).
        files: What the source's ``<dataset>_files`` catalog entry loads
            (file option -> location), or ``None`` for a source without one.

    Raises:
        SourceError: The parameter block sets a file option that the catalog
            entry sets too (files are catalog entries: one place says where
            they are).
    """
    if sources is None or isinstance(sources, Mapping):
        block = dict(plain((sources or {}).get(dataset)) or {})
    else:  # the typed ``sources`` block
        block = dict(plain(getattr(sources, dataset, None)) or {})
    files = dict(files or {})
    twice = sorted(k for k in files if block.get(k) is not None)
    if twice:
        names = ", ".join(f"sources.{dataset}.{k}" for k in twice)
        raise SourceError(
            f"{names}: input files are catalog entries; set them in "
            f"'{dataset}_files' (e.g. conf/local/catalog.yml), not in the parameters"
        )
    return {**block, **files}


def _is_input_file(value: str) -> bool:
    if "://" not in value:
        return Path(value).is_file()
    try:
        fs, path = fsspec.core.url_to_fs(value)
        return bool(fs.isfile(path))
    except Exception:  # an unknown protocol or an unreachable store: not a file
        return False


def input_files(options: Any) -> list[str]:
    """Every option value (nested ones too) that names an existing file.

    A value is a local path or an fsspec URL (``s3://...``, ``memory://...``).
    """
    raw = plain(options)
    if raw is None:
        return []

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            if value and _is_input_file(value):
                yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                yield from walk(item)

    return list(dict.fromkeys(walk(raw)))


def open_source(dataset: str, options: Any) -> tuple[RawSchema, Table, dict[str, Any]]:
    """Open source ``dataset`` lazily.

    Args:
        dataset: Source name.
        options: Its options: a raw mapping (validated strictly by
            ``read_source``), its typed options object, or ``None``.

    Returns:
        The raw schema, the lazy table and the ``raw_schema`` artefact: the
        schema's dictionary plus ``dataset``, ``options``, ``inputs`` (the
        files read, quoted by validation messages) and ``input_splits``
        (split -> the file whose rows carry that split value, for sources
        that read one file per split; ``{}`` otherwise).
    """
    schema, table = read_source(dataset, options)
    files = getattr(table, "files", ())
    if isinstance(options, Mapping):  # recorded with the defaults it ran with
        options = options_class(dataset).from_dict(options)
    record = {
        **schema.to_dict(),
        "dataset": dataset,
        "options": plain(options),
        "inputs": input_files(options),
        "input_splits": {
            split: str(path) for split, path in files if split is not None
        },
    }
    logger.info(
        "ingesting source '%s' (%s)",
        dataset,
        ", ".join(record["inputs"]) or "generated, no input file",
    )
    return schema, table, record
