"""Node of the pruning pipeline."""

from __future__ import annotations

import logging
from typing import Any

from mtl_reco.runs import RunStore
from mtl_reco.runs.config import RunsConfig

logger = logging.getLogger(__name__)


def prune_data(runs: RunsConfig) -> dict[str, Any]:
    """Keep the newest ``runs.keep_versions`` versions and ``runs.keep_failed`` runs.

    Every successful run prunes the same way at its end; this node does it on
    demand, e.g. with a smaller number:
    ``kedro run --pipelines=prune --params runs.keep_versions=3``.

    Returns:
        The ``prune_report``: what was deleted and the bytes freed.
    """
    report = RunStore(runs.data_dir).prune(runs.keep_versions, runs.keep_failed)
    logger.info(
        "pruned %d old version(s) and %d old failed run(s), %.1f MB freed",
        len(report["versions_removed"]),
        len(report["failed_runs_removed"]),
        report["bytes_freed"] / 1e6,
    )
    return {
        **report,
        "keep_versions": runs.keep_versions,
        "keep_failed": runs.keep_failed,
    }
