"""Tests of ``benchmarks/make_report.py`` on fixture result files.

The fixtures are result files in the harness' layout (tables, figures,
notes); the smoke tests of the scripts also render their real quick output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _smoke import BENCH, ROOT, load_make_report

SCRIPT = BENCH / "make_report.py"
MACHINE = {
    "cpu_model": "Test CPU @ 1.00GHz",
    "logical_cpus": 2,
    "usable_cpus": 2,
    "load_average": [0.5, 0.25, 0.1],
    "platform": "Linux-test",
    "python": "3.11.7",
    "torch": "2.13.0+cpu",
    "torch_threads": 2,
    "peak_rss_mb": 812.4,
}


@pytest.fixture(scope="module")
def make_report() -> ModuleType:
    return load_make_report("make_report_under_test")


def _doc(name: str, command: str, **extra: Any) -> dict[str, Any]:
    return {
        "benchmark": name,
        "timestamp": "2026-11-23T10:00:00+00:00",
        "command": command,
        "wall_s": 1.0,
        "config": {"quick": False},
        "machine": MACHINE,
        "figures": {},
        "tables": [],
        "notes": [],
        "results": {},
        **extra,
    }


def _table(title: str, columns: list[tuple[str, str]], rows: list) -> dict:
    return {
        "title": title,
        "columns": [c for c, _ in columns],
        "formats": [f for _, f in columns],
        "rows": rows,
    }


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    pipeline = _table(
        "",
        [("stage", ""), ("rows/s", ",.0f"), ("s", ".1f"), ("ratio", "{:.2f}x")],
        [["ingestion", 198556.4, 5.04, 1.04], ["encoding | split", None, 6.9, 1.13]],
    )
    census = _table(
        "Test AUC, mean ± std over seeds:",
        [("model", ""), ("mtl_reco", "±4n"), ("share", ".1%"), ("diff", ".1e")],
        [["mmoe", {"mean": 0.94213, "std": 0.002, "n": 3}, 0.4612, 6e-8],
         ["aitm", {"mean": 0.9, "std": None, "n": 1}, None, None]],
    )  # fmt: skip
    docs = {
        "data_pipeline": _doc(
            "data_pipeline",
            "python benchmarks/data_pipeline.py",
            tables=[pipeline],
            notes=["Chunk size 500,000 rows."],
            figures={"rows_ratio": 10.0, "rss_ratio_min": 1.04, "rss_ratio_max": 1.17},
        ),
        "census_quality": _doc(
            "census_quality",
            "python benchmarks/census_quality.py --seeds 3",
            tables=[census],
            figures={"diff_min": -0.0022, "diff_max": 0.0006},  # no paper gaps
        ),
        "serving": "not json",  # replaced below by an unreadable file
        "serving_quick": _doc("serving_quick", "python benchmarks/serving.py --quick"),
        "my_extra": _doc(
            "my_extra",
            "python benchmarks/my_extra.py",
            tables=[_table("Extra:", [("x", "d")], [[1]])],
        ),
        "old_layout": {"benchmark": "old_layout", "results": [{"x": 1}]},
    }
    for stem, doc in docs.items():
        text = doc if isinstance(doc, str) else json.dumps(doc)
        (folder / f"{stem}.json").write_text(text, encoding="utf-8")
    return folder


def _section(report: str, title: str) -> str:
    assert f"## {title}" in report, title
    return report.split(f"## {title}")[1].split("\n## ")[0]


def test_known_sections_in_order_then_the_others(
    make_report: ModuleType, results: Path
) -> None:
    report = make_report.build_report(results)
    assert report.startswith("# Benchmarks\n") and "do not edit by hand" in report
    titles = [f"{i}. {t}" for i, (t, _) in enumerate(make_report.SECTIONS.values(), 1)]
    positions = [report.index(f"## {t}") for t in titles]
    assert positions == sorted(positions)
    n = len(titles)
    assert report.index(f"## {n + 1}. my_extra") > positions[-1]
    assert "serving_quick" not in report  # quick runs are never reported


def test_header_tables_notes_and_reading(
    make_report: ModuleType, results: Path
) -> None:
    report = make_report.build_report(results)
    data = _section(report, "4. Data pipeline scale")
    assert "- **Command:** `python benchmarks/data_pipeline.py`" in data
    assert "- **Date:** 2026-11-23T10:00:00+00:00" in data
    assert (
        "- **Machine:** Test CPU @ 1.00GHz, 2 logical CPUs, torch 2.13.0+cpu, 2 torch "
        "thread(s), Python 3.11.7, Linux-test, peak RSS 812 MB, load average at start "
        "0.50 / 0.25 / 0.10" in data
    )
    assert "| stage | rows/s | s | ratio |\n| :--- | ---: | ---: | ---: |" in data
    assert "| ingestion | 198,556 | 5.0 | 1.04x |" in data
    assert "| encoding \\| split | - | 6.9 | 1.13x |" in data
    assert "Chunk size 500,000 rows." in data
    assert "**What this shows.** With 10x more rows" in data
    assert "1.04x to 1.17x" in data


def test_cell_formats_and_partial_readings(
    make_report: ModuleType, results: Path
) -> None:
    report = make_report.build_report(results)
    census = _section(report, "1. Census-Income quality")
    assert "Test AUC, mean ± std over seeds:" in census
    assert "| mmoe | 0.9421 ± 0.0020 (n=3) | 46.1% | 6.0e-08 |" in census
    assert "| aitm | 0.9000 (n=1) | - | - |" in census
    assert "`python benchmarks/census_quality.py --seeds 3`" in census
    assert "ranges from -0.0022 to +0.0006" in census
    assert "papers' mean" not in census  # its figures are not in the file


def test_missing_odd_and_unreadable_files(
    make_report: ModuleType, results: Path
) -> None:
    report = make_report.build_report(results)
    gpu = _section(report, "8. GPU check")
    assert "Not run yet: `python benchmarks/gpu_check.py` writes" in gpu
    contents = report.split("## Contents")[1].split("\n## ")[0]
    assert "(not run yet)" in contents and "my_extra" in contents
    serving = _section(report, "6. Serving")
    assert "could not be read" in serving
    assert "Re-run `python benchmarks/serving.py`" in serving
    odd = next(s for s in report.split("\n## ") if "old_layout" in s.split("\n")[0])
    assert "is not a result of the harness" in odd
    extra = next(s for s in report.split("\n## ") if "my_extra" in s.split("\n")[0])
    assert "`python benchmarks/my_extra.py`" in extra and "| 1 |" in extra


def test_deterministic_and_check_mode(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    base = [sys.executable, str(SCRIPT), "--results-dir", str(results)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*base, "--output", str(out), *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    assert run().returncode == 0
    text = out.read_text(encoding="utf-8")
    assert run().returncode == 0 and out.read_text(encoding="utf-8") == text
    assert run("--check").returncode == 0
    out.write_text(text + "edited\n", encoding="utf-8")
    stale = run("--check")
    assert stale.returncode == 1 and "out of date" in stale.stdout


def test_committed_report_is_up_to_date(make_report: ModuleType) -> None:
    """BENCHMARKS.md is what the committed result files render to."""
    report = make_report.build_report(ROOT / "benchmarks" / "results")
    assert (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8") == report
    assert "is not a result of the harness" not in report
    assert "could not be read" not in report
