"""A catalog entry seen through a run's staging folder (see :mod:`mtl_reco.guard`)."""

from __future__ import annotations

from typing import Any

from kedro.io import AbstractDataset


class StagedDataset(AbstractDataset[Any, Any]):
    """Writes go to the run's staged copy; reads prefer it, else the current one.

    The run guard puts one of these in place of every catalog entry that the
    pipeline being run writes inside the data folder. Within the run, a node
    downstream of the writer reads what the run wrote; a dataset the run has
    not (yet) written reads the current artefact, so ``--only-missing-outputs``
    still sees what earlier runs left. Nothing is written at the current
    location: the staged files are moved there only when the run succeeds.

    Args:
        staged: The entry built from its catalog configuration with the path
            moved into the run's staging folder.
        current: The entry as configured (the last successful run's artefact).
    """

    def __init__(
        self, staged: AbstractDataset[Any, Any], current: AbstractDataset[Any, Any]
    ) -> None:
        self._staged = staged
        self._current = current

    @property
    def staged(self) -> AbstractDataset[Any, Any]:
        """The run's own copy."""
        return self._staged

    def load(self) -> Any:
        """The run's copy once written, else the current artefact."""
        if self._staged.exists():
            return self._staged.load()
        return self._current.load()

    def save(self, data: Any) -> None:
        """Save into the run's staging folder only."""
        self._staged.save(data)

    def _exists(self) -> bool:
        return self._staged.exists() or self._current.exists()

    def _release(self) -> None:
        self._staged.release()
        self._current.release()

    def _describe(self) -> dict[str, Any]:
        return {
            "staged": self._staged._describe(),
            "current": self._current._describe(),
        }
