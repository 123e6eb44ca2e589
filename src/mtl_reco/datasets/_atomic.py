"""Atomic local writes and the versioned local-file base of the custom datasets."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it.

    The target appears only when complete; on any error the temporary file is
    removed and an existing target is left untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class LocalVersionedFile(AbstractVersionedDataset[Any, Any]):
    """A local file, optionally versioned by Kedro; subclasses add load/save."""

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self.metadata = metadata

    def _load_path(self) -> Path:
        path = Path(self._get_load_path().as_posix())
        if not path.exists():
            raise DatasetError(
                f"{path} does not exist; run the pipeline that writes it"
            )
        return path

    def _save_path(self) -> Path:
        return Path(self._get_save_path().as_posix())

    def _exists(self) -> bool:
        try:
            return Path(self._get_load_path().as_posix()).exists()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}
