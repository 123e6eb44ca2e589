"""Smoke test of ``benchmarks/scale.py --quick`` (subprocess).

Two tiny sizes, memory and stream, one and two gloo ranks, and the whole
``kedro run --pipelines=train_mmoe`` with ``trainer.data=stream``. Checks that
every combination was measured, that the peak RSS of a two-rank run counts
both ranks, that the ratios in the table are those of the measurements and
that the pipeline run succeeded and reported its nodes. Timings are not
compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _smoke import quick_json_once

SCRIPT = "benchmarks/scale.py"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return quick_json_once(tmp_path_factory, SCRIPT)


def test_every_size_mode_and_rank_count_is_measured(quick) -> None:
    _, doc = quick
    runs = doc["results"]["training"]
    assert {(r["size"], r["mode"], r["ranks"]) for r in runs} == {
        (size, mode, ranks)
        for size in (20_000, 60_000)
        for mode in ("memory", "stream")
        for ranks in (1, 2)
    }
    for run in runs:
        assert "error" not in run, run
        assert run["train_rows"] == int(run["size"] * 0.8)
        assert run["samples_per_s"] > 0
        assert len(run["rank_peak_rss_mb"]) == (2 if run["ranks"] == 2 else 0)
        assert run["total_peak_rss_mb"] == pytest.approx(
            run["process_peak_rss_mb"] + sum(run["rank_peak_rss_mb"]), abs=0.1
        )


def test_the_table_ratios_are_the_measurements_ratios(quick) -> None:
    _, doc = quick
    runs = doc["results"]["training"]
    memory = {
        r["size"]: r["samples_per_s"]
        for r in runs
        if r["mode"] == "memory" and r["ranks"] == 1
    }
    rows = doc["tables"][0]["rows"]
    assert len(rows) == len(runs)
    for row, run in zip(rows, runs, strict=True):
        assert row[4] == run["samples_per_s"]
        assert row[5] == pytest.approx(run["samples_per_s"] / memory[run["size"]])
    stream = [
        r["samples_per_s"] / memory[r["size"]]
        for r in runs
        if r["mode"] == "stream" and r["ranks"] == 1
    ]
    assert doc["figures"]["stream_vs_memory_min"] == pytest.approx(min(stream))


def test_the_pipeline_run_streams_and_succeeds(quick) -> None:
    _, doc = quick
    pipe = doc["results"]["pipeline"]
    assert pipe["exit_status"] == 0, pipe.get("log_tail")
    assert pipe["command"] == (
        "kedro run --pipelines=train_mmoe --params "
        '"sources.simulated.n_rows=20000,trainer.data=stream,trainer.epochs=1"'
    )
    assert {"data_processing.ingest_source", "mmoe.train", "mmoe.evaluate"} <= set(
        pipe["node_s"]
    )
    assert pipe["peak_rss_mb"] > 100 and pipe["train_samples_per_s"] > 0
    assert set(pipe["test_auc"]) == {"ctr", "ctcvr"}
    assert doc["figures"]["pipeline_exit_status"] == 0
