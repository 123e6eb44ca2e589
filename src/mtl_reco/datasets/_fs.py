"""The fsspec-backed, optionally versioned file base of the custom datasets.

Follows the pattern of the kedro-datasets file datasets (``filepath`` with any
fsspec protocol, ``credentials`` and ``fs_args`` passed to the filesystem,
``open_args_load``/``open_args_save`` passed to ``open``), so a catalog entry
can point at ``s3://``, ``gcs://`` or ``memory://`` as well as a local path.

Writes go to a temporary sibling that is moved over the target when
complete. Inside ``kedro run`` this is belt and braces: the run guard
(:mod:`mtl_reco.guard`) already writes every output inside the data folder
under the run's staging folder and moves it into place only when the whole
run has succeeded; the temporary file also protects direct use of a dataset
(notebooks, benchmarks) and targets outside the data folder.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from copy import deepcopy
from pathlib import PurePosixPath
from typing import IO, Any

import fsspec
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)


class FsspecFileDataset(AbstractVersionedDataset[Any, Any]):
    """One file on any fsspec filesystem, optionally versioned by Kedro.

    Subclasses implement ``load``/``save`` with :meth:`_open_load` and
    :meth:`_write`.

    Args:
        filepath: Path or URL of the file (``data/x.pt``, ``s3://b/x.pt``,
            ``memory:///x.pt``); without a protocol the local filesystem.
        version: Kedro version (``versioned: true`` in the catalog).
        credentials: Passed to the filesystem constructor.
        fs_args: Passed to the filesystem constructor, except
            ``open_args_load``/``open_args_save``, passed to ``open``.
        metadata: Free-form metadata (kedro-viz reads ``kedro-viz``).
    """

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        _fs_args = deepcopy(fs_args) or {}
        self._fs_open_args_load: dict[str, Any] = _fs_args.pop("open_args_load", {})
        self._fs_open_args_save: dict[str, Any] = _fs_args.pop("open_args_save", {})
        _credentials = deepcopy(credentials) or {}
        protocol, path = get_protocol_and_path(str(filepath), version)
        self._protocol = protocol
        if protocol == "file":
            _fs_args.setdefault("auto_mkdir", True)
        self._fs = fsspec.filesystem(protocol, **_credentials, **_fs_args)
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    # -- paths ------------------------------------------------------------------------
    def _load_path_str(self) -> str:
        """The (latest) version to read; :class:`DatasetError` naming it if absent."""
        path = get_filepath_str(self._get_load_path(), self._protocol)
        if not self._fs.exists(path):
            raise DatasetError(
                f"{self._url(path)} does not exist; run the pipeline that writes it"
            )
        return path

    def _save_path_str(self) -> str:
        return get_filepath_str(self._get_save_path(), self._protocol)

    def _url(self, path: str) -> str:
        """``path`` with its protocol, as a person would type it."""
        if self._protocol == "file" or "://" in path:
            return path
        return f"{self._protocol}://{path}"

    # -- I/O --------------------------------------------------------------------------
    def _open_load(self, mode: str = "rb") -> IO[Any]:
        """Open the (latest) version for reading."""
        opened: IO[Any] = self._fs.open(
            self._load_path_str(), mode=mode, **self._fs_open_args_load
        )
        return opened

    def _write(self, write: Callable[[IO[bytes]], object]) -> None:
        """Call ``write(file)`` on a temporary sibling, then move it over the target.

        On any error the temporary file is removed and an existing target is
        left untouched.
        """
        target = self._save_path_str()
        parent, _, name = target.rpartition("/")
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp" if parent else f".{name}.tmp"
        if parent:
            self._fs.makedirs(parent, exist_ok=True)
        try:
            with self._fs.open(tmp, mode="wb", **self._fs_open_args_save) as file:
                write(file)
            self._fs.mv(tmp, target)
        except BaseException:
            if self._fs.exists(tmp):
                self._fs.rm(tmp)
            raise
        finally:
            self._invalidate_cache()

    # -- Kedro ------------------------------------------------------------------------
    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return bool(self._fs.exists(path))

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": self._filepath,
            "protocol": self._protocol,
            "version": self._version,
        }

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
