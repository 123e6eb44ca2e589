"""Runs people can leave alone (no framework import).

One run at a time per data folder, and a run's outputs become current only
when the whole run succeeds:

* :mod:`mtl_reco.runs.lock` -- an exclusive lock file that names its holder
  and is released by the kernel when the holder dies;
* :mod:`mtl_reco.runs.store` -- staging, promotion, recovery, history and
  pruning of the runs over one data folder.

The Kedro glue that applies them to every ``kedro run`` is
:mod:`mtl_reco.guard`.
"""

from mtl_reco.runs.lock import FileLock, Holder, LockHeldError
from mtl_reco.runs.store import RunStore, StoreError

__all__ = ["FileLock", "Holder", "LockHeldError", "RunStore", "StoreError"]
