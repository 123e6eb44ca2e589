"""Unit tests of ``benchmarks/harness.py``: options, cells, tables, the writer."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from _smoke import BENCH

if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
import harness
from harness import Table, option


@dataclass
class Options(harness.Config):
    sizes: tuple[int, ...] = option((1000, 2000), "rows", quick=(10,))
    models: tuple[str, ...] = option(("a", "b"), "", choices=("a", "b", "c"))
    ratio: float = option(1.5, "")
    profile: bool = option(True, "", quick=False)


def test_options_from_the_dataclass() -> None:
    full = harness.parse(Options, [])
    assert (full.sizes, full.models, full.profile, full.quick) == (
        (1000, 2000), ("a", "b"), True, False
    )  # fmt: skip
    assert full.results_dir == str(harness.RESULTS_DIR) and full.threads is None
    quick = harness.parse(Options, ["--quick", "--models", "c,a", "--ratio", "2"])
    assert (quick.sizes, quick.models, quick.ratio, quick.profile) == (
        (10,), ("c", "a"), 2.0, False
    )  # fmt: skip
    given = harness.parse(Options, ["--quick", "--profile", "--sizes", "5,6"])
    assert given.profile is True and given.sizes == (5, 6)  # given beats --quick


def test_unknown_choice_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        harness.parse(Options, ["--models", "a,z"])
    assert exit_info.value.code == 2
    assert "unknown models 'z'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "spec", "text"),
    [
        (None, ",.0f", "-"),
        (float("nan"), ".2f", "-"),
        (1234.5, ",.0f", "1,234"),
        (2.5, "{:.2f}x", "2.50x"),
        (0.4612, ".1%", "46.1%"),
        ({"mean": 0.5, "std": 0.01, "n": 3}, "±4n", "0.5000 ± 0.0100 (n=3)"),
        ({"mean": 0.5, "std": None, "n": 1}, "±2", "0.50"),
        ({"mean": None, "std": None, "n": 0}, "±4", "-"),
        (1.0, "±4", "1.0000"),
        ("yes", ".2f", "yes"),
        (True, "", "True"),
    ],
)
def test_cells(value: object, spec: str, text: str) -> None:
    assert harness.fmt(value, spec) == text


def test_result_written_atomically_with_its_tables(tmp_path: Path) -> None:
    cfg = harness.parse(Options, ["--quick", "--results-dir", str(tmp_path)])
    result = harness.start("demo", cfg, extra={"k": (1, 2)})
    assert result.benchmark == "demo_quick"
    assert (
        result.config["extra"] == {"k": [1, 2]} and "results_dir" not in result.config
    )
    table = Table("T:", [("name", ""), ("value", ".1f")], [["x", 1.25]])
    result.tables, result.figures = [table], {"v": float("inf")}
    result.results = {"nested": {"values": [1.0, float("nan")]}}
    path = result.write(tmp_path, quiet=True)
    assert [p.name for p in tmp_path.iterdir()] == ["demo_quick.json"]
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert list(doc)[:4] == ["benchmark", "timestamp", "command", "wall_s"]
    assert doc["figures"] == {"v": None}  # strict JSON
    assert doc["results"] == {"nested": {"values": [1.0, None]}}
    assert doc["machine"]["peak_rss_mb"] > 0 and "load_average_end" in doc["machine"]
    again = Table.from_dict(doc["tables"][0])
    assert again == table and again.cells() == [["x", "1.2"]]
    assert "name  value" in table.text()
