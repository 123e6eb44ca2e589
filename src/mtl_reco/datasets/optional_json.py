"""kedro-datasets' ``json.JSONDataset`` that may be read before it was written."""

from __future__ import annotations

from typing import Any

from kedro_datasets.json import JSONDataset


class OptionalJSONDataset(JSONDataset):  # type: ignore[misc]  # untyped base
    """A ``json.JSONDataset`` whose ``load`` gives ``None`` while never written.

    The comparison pipeline reads the metrics of every experiment and leaves
    out the ones never trained; the checks before a run skip the existence
    of an entry with ``missing_ok``. Everything else (fsspec ``filepath``,
    ``versioned``, ``save_args``, ``fs_args``, ``credentials``, ``preview``)
    is kedro-datasets'.

    Args:
        missing_ok: When true (the default), loading a file that was never
            written returns ``None`` instead of failing.
        **kwargs: ``json.JSONDataset``'s arguments.

    Example catalog entry::

        "{experiment}.test_metrics":
          type: mtl_reco.datasets.OptionalJSONDataset
          filepath: data/08_reporting/{experiment}/test_metrics.json
          versioned: true
    """

    def __init__(self, *, missing_ok: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._missing_ok = missing_ok

    @property
    def missing_ok(self) -> bool:
        """Whether loading a file that was never written gives ``None``."""
        return self._missing_ok

    def load(self) -> Any:
        """The parsed (latest version of the) file; ``None`` if absent and allowed."""
        if self._missing_ok and not self._exists():
            return None
        return JSONDataset.load.__wrapped__(self)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "missing_ok": self._missing_ok}
