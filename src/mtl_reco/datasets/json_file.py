"""Versioned, atomically written JSON and text datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io.core import Version

from mtl_reco.datasets._atomic import LocalVersionedFile, atomic_write


class JSONFileDataset(LocalVersionedFile):
    """JSON on the local disk, written atomically, optionally versioned.

    Args:
        filepath: Target file.
        missing_ok: When true, loading a file that was never written returns
            ``None`` instead of failing. The comparison pipeline uses this to
            gather the metrics of every experiment that has been trained so far.
        indent: JSON indentation.

    Example catalog entry::

        "{experiment}.test_metrics":
          type: mtl_reco.datasets.JSONFileDataset
          filepath: data/08_reporting/{experiment}/test_metrics.json
          versioned: true
          missing_ok: true
    """

    def __init__(
        self,
        *,
        filepath: str,
        missing_ok: bool = False,
        indent: int = 2,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(filepath=filepath, version=version, metadata=metadata)
        self._missing_ok = missing_ok
        self._indent = indent

    @property
    def missing_ok(self) -> bool:
        """Whether loading a file that was never written gives ``None``."""
        return self._missing_ok

    def load(self) -> Any:
        """Parse the (latest version of the) file, or ``None`` if allowed and absent."""
        if self._missing_ok and not self._exists():
            return None
        return json.loads(self._load_path().read_text(encoding="utf-8"))

    def save(self, data: Any) -> None:
        """Write ``data`` as JSON (NaN written as ``NaN``, as Python's json does)."""
        text = json.dumps(data, indent=self._indent, default=_default)
        atomic_write(
            self._save_path(), lambda tmp: tmp.write_text(text, encoding="utf-8")
        )

    @property
    def filepath(self) -> Path:
        """Path of the version that ``load`` reads."""
        return Path(self._get_load_path().as_posix())


def _default(value: Any) -> Any:
    """Serialise numpy scalars/arrays and dataclass-like objects."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


class TextFileDataset(LocalVersionedFile):
    """UTF-8 text (e.g. a markdown report), written atomically."""

    def load(self) -> str:
        """Read the text."""
        return self._load_path().read_text(encoding="utf-8")

    def save(self, data: str) -> None:
        """Write the text atomically."""
        atomic_write(
            self._save_path(), lambda tmp: tmp.write_text(data, encoding="utf-8")
        )
