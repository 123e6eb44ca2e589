"""The input files of a source as one catalog entry (layer ``raw``).

A source's readers stream their files chunk by chunk (see
:mod:`mtl_reco.sources`), so the catalog does not load the data: this dataset
names the files, ``load`` returns their locations as the source options that
take them, and the ingestion node merges those into the source's options.
That way ``kedro catalog describe-datasets`` and kedro-viz show where the raw
data comes from, and a user points a source elsewhere in
``conf/local/catalog.yml`` (any fsspec URL: a path, ``file://``, ``s3://``,
``memory://``, ...) without touching the parameters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from copy import deepcopy
from typing import Any

import fsspec
from kedro.io.core import AbstractDataset, DatasetError
from kedro_datasets._typing import JSONPreview  # kedro-viz's preview type (a str)

FileOptions = dict[str, Any]
"""Source option name -> location (a string, ``None``, or a nested mapping)."""


class SourceFilesDataset(AbstractDataset[Any, FileOptions]):
    """Where a source's input files are; loading opens nothing.

    Args:
        files: One location (the source's ``path`` option) or a mapping of
            the source's file options to locations, e.g. ``{train: ...,
            valid: ..., test: ...}`` for ``ali_ccp``, ``{paths: {train: ...,
            test: ...}}`` for ``census_income``, ``{directory: ...}`` for
            ``ali_ccp_raw``. ``None`` leaves an option unset. Locations are
            paths or fsspec URLs; ``file://`` URLs are returned as plain
            paths, other URLs unchanged.
        credentials: Passed to the filesystem of :meth:`exists` and
            :meth:`preview`.
        fs_args: Likewise (the readers open the files with fsspec's defaults
            for the protocol: credentials from the environment or fsspec's
            configuration, e.g. ``FSSPEC_S3_ANON=true``).
        metadata: Free-form metadata (kedro-viz reads ``kedro-viz``).

    Example catalog entry (``conf/local/catalog.yml`` overrides it whole)::

        ali_ccp_files:
          type: mtl_reco.datasets.SourceFilesDataset
          files:
            train: s3://bucket/ali_ccp/train.csv.gz
            valid: s3://bucket/ali_ccp/valid.csv.gz
            test: s3://bucket/ali_ccp/test.csv.gz
          metadata:
            kedro-viz: {layer: raw, preview_args: {nrows: 5}}
    """

    missing_ok = True
    """The checks before a run skip this entry's existence: every source's
    entry is an input of ingestion, but only the selected source's files must
    exist, and reading that source's schema checks them."""

    def __init__(
        self,
        *,
        files: str | Mapping[str, Any] | None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if files is None:
            options: FileOptions = {}
        elif isinstance(files, str):
            options = {"path": files}
        elif isinstance(files, Mapping):
            options = {str(k): v for k, v in files.items()}
        else:
            raise DatasetError(
                f"SourceFilesDataset: `files` must be a location or a mapping of "
                f"option -> location, got {type(files).__name__}"
            )
        for key, value in _flatten(options):
            if not isinstance(value, str):
                raise DatasetError(
                    f"SourceFilesDataset: files.{key} must be a string or null, "
                    f"got {value!r}"
                )
        self._files = options
        self._storage_options = {
            **deepcopy(credentials or {}),
            **deepcopy(fs_args or {}),
        }
        self.metadata = metadata

    def load(self) -> FileOptions:
        """The file options with their locations (nothing is opened)."""
        return _map(self._files, _local_or_url)

    def save(self, data: Any) -> None:
        """Raw inputs are never written by the pipeline."""
        raise DatasetError("SourceFilesDataset is read-only: it names raw input files")

    def locations(self) -> dict[str, str]:
        """``{option (dotted when nested): location}`` of every file given."""
        return {key: _local_or_url(value) for key, value in _flatten(self._files)}

    def _fs(self, location: str) -> tuple[Any, str]:
        protocol = fsspec.utils.get_protocol(location)
        fs = fsspec.filesystem(protocol, **self._storage_options)
        return fs, fs._strip_protocol(location)

    def _exists(self) -> bool:
        """Every file given exists (a ``directory`` option: that folder exists)."""
        given = self.locations()
        if not given:
            return False
        for key, location in given.items():
            fs, path = self._fs(location)
            found = fs.isdir(path) if key == "directory" else fs.isfile(path)
            if not found:
                return False
        return True

    def preview(self, nrows: int = 5) -> JSONPreview:
        """The first ``nrows`` lines of every file (a folder: its first entries).

        Returns:
            JSON text ``{option: {"location": ..., "lines": [...]}}``; a file
            that cannot be read has ``"error"`` instead of ``"lines"``.
        """
        shown: dict[str, Any] = {}
        for key, location in self.locations().items():
            entry: dict[str, Any] = {"location": location}
            try:
                fs, path = self._fs(location)
                if fs.isdir(path):
                    entry["entries"] = sorted(fs.ls(path, detail=False))[:nrows]
                else:
                    entry["lines"] = _first_lines(
                        location, nrows, self._storage_options
                    )
            except Exception as exc:  # a preview never fails kedro-viz
                entry["error"] = f"{type(exc).__name__}: {exc}"
            shown[key] = entry
        return JSONPreview(json.dumps(shown))

    def _describe(self) -> dict[str, Any]:
        return {"files": self.locations()}


def _first_lines(
    location: str, nrows: int, storage_options: dict[str, Any]
) -> list[str]:
    lines: list[str] = []
    with fsspec.open(
        location, mode="rt", compression="infer", encoding="utf-8", **storage_options
    ) as file:
        for line in file:
            lines.append(line.rstrip("\r\n"))
            if len(lines) >= nrows:
                break
    return lines


def _local_or_url(location: Any) -> Any:
    """``file:///x`` -> ``/x`` (readers that need a local path get one)."""
    if isinstance(location, str) and location.startswith("file://"):
        return location.removeprefix("file://")
    return location


def _map(options: Mapping[str, Any], convert: Any) -> FileOptions:
    return {
        k: _map(v, convert) if isinstance(v, Mapping) else convert(v)
        for k, v in options.items()
    }


def _flatten(options: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``[(dotted option, location)]`` of every non-null value."""
    out: list[tuple[str, Any]] = []
    for key, value in options.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_flatten(value, f"{name}."))
        elif value is not None:
            out.append((name, value))
    return out
