"""The built-in processed-CSV formats: one ``<name>.yml`` description each.

Adding a processed-CSV source is one file here (its columns and labels, see
:class:`mtl_reco.sources._processed.FormatDescription`) plus the catalog
entry ``<name>_files`` naming its files; :mod:`mtl_reco.sources.registry`
finds every description in this folder.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from mtl_reco.sources._processed import ProcessedFormat, load_format

SUFFIX = ".yml"


def builtin_format_files() -> dict[str, Path]:
    """Source name -> description file, for every ``*.yml`` in this package."""
    folder = Path(str(resources.files(__name__)))
    return {p.stem: p for p in sorted(folder.glob(f"*{SUFFIX}"))}


@cache
def builtin_format(name: str) -> ProcessedFormat:
    """The built-in format ``name`` (read once)."""
    files = builtin_format_files()
    if name not in files:
        raise KeyError(f"no built-in format {name!r}; there are {sorted(files)}")
    return load_format(files[name])
