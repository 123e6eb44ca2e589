"""Tests of ``benchmarks/make_report.py`` on fixture JSON files.

The fixtures are minimal versions of the layouts the benchmark scripts
write; the smoke tests of ``serving.py`` and ``selection_bias.py`` also
render their real quick output.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "make_report.py"
MACHINE = {
    "cpu_model": "Test CPU @ 1.00GHz",
    "logical_cpus": 2,
    "usable_cpus": 2,
    "load_average": [0.5, 0.25, 0.1],
    "platform": "Linux-test",
    "python": "3.11.7",
    "torch": "2.13.0+cpu",
    "torch_threads": 2,
}


@pytest.fixture(scope="module")
def make_report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_report_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _header(name: str, command: str) -> dict[str, Any]:
    return {
        "benchmark": name,
        "timestamp": "2026-11-23T10:00:00+00:00",
        "command": command,
        "machine": MACHINE,
    }


def _data_pipeline() -> dict[str, Any]:
    def stages(rate: int, rss: float) -> list[dict[str, Any]]:
        return [
            {"stage": s, "seconds": 1.5, "rows_per_s": rate, "peak_rss_mb": rss}
            for s in ("ingestion", "encoding")
        ]

    return {
        **_header("data_pipeline", "python benchmarks/data_pipeline.py"),
        "chunk_rows": 500000,
        "source": "simulated",
        "results": [
            {"rows": 1000000, "stages": stages(200000, 800.0)},
            {"rows": 10000000, "stages": stages(300000, 880.0)},
        ],
        "peak_rss_ratio_largest_vs_smallest": {"ingestion": 1.1, "encoding": 1.1},
        "rows_ratio_largest_vs_smallest": 10.0,
    }


def _serving() -> dict[str, Any]:
    def lat(median: float) -> dict[str, float]:
        return {"median_us": median, "p99_us": 2 * median, "p90_us": 1.5 * median}

    def thr(rate: float) -> dict[str, float]:
        return {"rows_per_s": rate, "median_ms": 1024 / rate * 1e3}

    entry = {
        "latency_batch1": {
            "torch": lat(500.0),
            "onnxruntime": lat(100.0),
            "onnx_predictor": lat(150.0),
        },
        "throughput": {
            "torch": thr(50000.0),
            "onnxruntime": thr(60000.0),
            "onnx_predictor": thr(58000.0),
        },
        "speedup_onnxruntime_vs_torch": {"latency_median": 5.0, "throughput": 1.2},
    }
    return {
        **_header("serving", "python benchmarks/serving.py"),
        "config": {"batch_size": 1024, "latency_calls": 3000, "rounds": 5},
        "schema": {"sparse_fields": 23, "dense_fields": 8, "total_cardinality": 9},
        "results": [
            {"model": "mmoe", "parity_max_abs_diff": 6e-8, "by_threads": {"1": entry}}
        ],
    }


def _stats(mean: float, std: float | None = 0.01) -> dict[str, Any]:
    return {"mean": mean, "std": std, "n": 3}


def _selection_bias() -> dict[str, Any]:
    def truth(auc: float, ratio: float) -> dict[str, Any]:
        subset = {
            "auc_counterfactual": _stats(auc),
            "spearman": _stats(0.3),
            "mean_ratio": _stats(ratio),
            "ece": _stats(0.02),
        }
        return {
            "all": subset,
            "clicked": {**subset, "mean_ratio": _stats(1.0)},
            "unclicked": subset,
            "auc_clicked_observed": _stats(0.62),
        }

    model = {
        "ctr_auc": _stats(0.75),
        "ctr_oracle_auc": _stats(0.86),
        "ctr_oracle_gap": _stats(0.11),
        "ctcvr_auc": _stats(0.83),
        "ctcvr_oracle_auc": _stats(0.95),
        "ctcvr_oracle_gap": _stats(0.12),
        "cvr_auc_clicked": _stats(0.63),
        "epochs_run": _stats(2.0, 0.0),
    }
    return {
        **_header("selection_bias", "python benchmarks/selection_bias.py"),
        "config": {"rows": 1000000, "seeds": 3, "epochs": 4},
        "runs": [{"splits": {"test": {"rows": 10, "clicks": 2, "purchases": 1}}}],
        "summary": {
            "pcvr_vs_truth": {
                "naive_cvr": truth(0.59, 1.4),
                "esmm": truth(0.63, 1.8),
            },
            "oracle_pcvr": {
                "all": {"auc_counterfactual": _stats(0.84)},
                "unclicked": {"auc_counterfactual": _stats(0.84)},
            },
            "models": {"esmm": model, "mmoe": model},
            "headline": {
                "esmm_minus_naive_auc_counterfactual_all": {
                    "mean": 0.04,
                    "std": 0.005,
                    "n": 3,
                }
            },
        },
    }


def _census_quality() -> dict[str, Any]:
    def side(model: str, task: str, ours: float, theirs: float) -> dict[str, Any]:
        return {
            "model": model,
            "task": task,
            "mtl_reco": {"mean": ours, "std": 0.002, "n": 3},
            "torch_rechub": {"mean": theirs, "std": 0.003, "n": 3},
            "mtl_reco_minus_torch_rechub": ours - theirs,
            "paper": {"best": 0.941, "mean": 0.9359} if model == "mmoe" else None,
            "paper_source": "MMoE paper Table 1" if model == "mmoe" else None,
        }

    def summary(lib: str, task: str) -> dict[str, Any]:
        return {
            "model": "mmoe",
            "library": lib,
            "task": task,
            "test_auc_mean": 0.9,
            "epochs_run_mean": 7.0,
            "seconds_per_epoch_mean": 3.5,
        }

    return {
        **_header("census_quality", "python benchmarks/census_quality.py --seeds 3"),
        "note": "Indicative comparison with the papers.",
        "config": {"seeds": [1, 2, 3], "budget": {"batch_size": 1024}},
        "side_by_side": [
            side("mmoe", "income", 0.942, 0.935),
            side("aitm", "marital", 0.992, 0.991),
        ],
        "summary": [summary("mtl_reco", "income"), summary("torch_rechub", "income")],
        "errors": [],
    }


def _loss_weighting_unknown_layout() -> dict[str, Any]:
    return {
        **_header("loss_weighting", "python benchmarks/loss_weighting.py --seeds 5"),
        "dataset": "census_income",
        "results": [
            {
                "strategy": "uwl",
                "income_auc": {"mean": 0.941, "std": 0.002},
                "marital_auc": {"mean": 0.992, "std": 0.001},
            },
            {
                "strategy": "gradnorm",
                "income_auc": {"mean": 0.935, "std": 0.003},
                "marital_auc": {"mean": 0.991, "std": 0.001},
            },
        ],
    }


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    docs = {
        "data_pipeline": _data_pipeline(),
        "serving": _serving(),
        "selection_bias": _selection_bias(),
        "census_quality": _census_quality(),
        "loss_weighting": _loss_weighting_unknown_layout(),
        # a known file with a layout its renderer does not expect
        "train_throughput": {
            **_header("train_throughput", "python benchmarks/train_throughput.py"),
            "results": [{"model": "mmoe", "speed": 1.0}],
        },
        # never reported
        "serving_quick": {**_serving(), "benchmark": "serving_quick"},
        # an unknown benchmark
        "my_extra": {**_header("my_extra", "python benchmarks/my_extra.py"), "x": 1},
    }
    for stem, doc in docs.items():
        (folder / f"{stem}.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder


def _section(report: str, title: str) -> str:
    assert f"## {title}" in report, title
    return report.split(f"## {title}")[1].split("\n## ")[0]


def test_every_known_section_in_order(make_report: ModuleType, results: Path) -> None:
    report = make_report.build_report(results)
    positions = [report.index(f"## {s.title}") for s in make_report.SECTIONS]
    assert positions == sorted(positions)
    assert report.startswith("# Benchmarks\n")
    assert "do not edit by hand" in report


def test_tables_commands_and_machine(make_report: ModuleType, results: Path) -> None:
    report = make_report.build_report(results)
    data = _section(report, "4. Data pipeline scale")
    assert "- **Command:** `python benchmarks/data_pipeline.py`" in data
    assert "- **Date:** 2026-11-23T10:00:00+00:00" in data
    assert "Test CPU @ 1.00GHz, 2 logical CPUs, torch 2.13.0+cpu" in data
    assert "| ingestion | 200,000 | 1.5 | 800 | 300,000 | 1.5 | 880 | 1.10 |" in data
    assert "**What this shows.** With 10x more rows" in data

    serving = _section(report, "5. Serving: ONNX Runtime vs PyTorch eager")
    assert "| mmoe | 500 | 1,000 | 100 | 200 | 150 | 5.00x |" in serving
    assert "| mmoe | 50,000 | 60,000 | 58,000 | 1.20x | 6.0e-08 |" in serving

    bias = _section(report, "6. Sample selection bias, checked against the true pCVR")
    assert (
        "| naive CVR (clicked rows only) | 0.5900 ± 0.0100 | 0.5900 ± 0.0100 |" in bias
    )
    assert "| esmm (latent pCVR) | 0.6300 ± 0.0100 |" in bias
    assert "| oracle (true pCVR) | 0.8400 ± 0.0100 |" in bias
    assert "| mmoe | 0.7500 ± 0.0100 | 0.8600 ± 0.0100 | 0.1100 ± 0.0100 |" in bias
    assert "ranks better than the naive model" in bias
    assert "per-seed difference 0.0400 ± 0.0050 over 3 seeds" in bias


def test_missing_files_say_which_command(
    make_report: ModuleType, results: Path
) -> None:
    (results / "census_quality.json").unlink()
    report = make_report.build_report(results)
    census = _section(report, make_report.SECTIONS[0].title)
    assert "Not run yet: `python benchmarks/census_quality.py` writes" in census
    contents = report.split("## Contents")[1].split("\n## ")[0]
    assert "(not run yet)" in contents
    layout = _section(report, "Expert layout (MMoE training step)")
    assert "Not run yet: `python benchmarks/expert_layout.py`" in layout


def test_census_sections(make_report: ModuleType, results: Path) -> None:
    report = make_report.build_report(results)
    census = _section(report, make_report.SECTIONS[0].title)
    assert "`python benchmarks/census_quality.py --seeds 3`" in census
    assert (
        "| mmoe | income | 0.9420 ± 0.0020 (n=3) | 0.9350 ± 0.0030 (n=3) | 0.0070 "
        "| 0.9410 / 0.9359 | MMoE paper Table 1 |" in census
    )
    assert "| aitm | marital |" in census and "| - | - |" in census
    assert "| mmoe | 7.0 | 3.50 | 7.0 | 3.50 |" in census
    assert "Indicative comparison with the papers." in census
    assert "ranges from +0.0010 to +0.0070" in census


def test_unknown_layouts_are_rendered_generically(
    make_report: ModuleType, results: Path
) -> None:
    report = make_report.build_report(results)
    weighting = _section(report, "2. Loss weighting on Census-Income (MMoE)")
    assert "`python benchmarks/loss_weighting.py --seeds 5`" in weighting
    assert "is not the one this report knows" in weighting
    assert "| gradnorm | 0.9350 ± 0.0030 | 0.9910 ± 0.0010 |" in weighting
    throughput = _section(report, "3. Training throughput: mtl_reco vs Torch-RecHub")
    assert "is not the one this report knows" in throughput
    assert "| mmoe | 1.0000 |" in throughput
    extra = _section(report, "Other: my_extra")
    assert "`python benchmarks/my_extra.py`" in extra and "| x | 1 |" in extra


def test_quick_files_are_ignored(make_report: ModuleType, results: Path) -> None:
    report = make_report.build_report(results)
    assert "serving_quick" not in report


def test_deterministic_and_check_mode(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    base = [sys.executable, str(SCRIPT), "--results-dir", str(results)]
    first = subprocess.run(
        [*base, "--output", str(out)], capture_output=True, text=True, check=False
    )
    assert first.returncode == 0, first.stderr
    text = out.read_text(encoding="utf-8")
    second = subprocess.run(
        [*base, "--output", str(out), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert second.returncode == 0, second.stdout
    assert out.read_text(encoding="utf-8") == text
    out.write_text(text + "edited\n", encoding="utf-8")
    stale = subprocess.run(
        [*base, "--output", str(out), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert stale.returncode == 1
    assert "out of date" in stale.stdout


def test_unreadable_file_is_reported(make_report: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "serving.json").write_text("{not json", encoding="utf-8")
    report = make_report.build_report(tmp_path)
    serving = _section(report, "5. Serving: ONNX Runtime vs PyTorch eager")
    assert "could not be read" in serving
    assert "Re-run `python benchmarks/serving.py`" in serving


def test_committed_results_use_their_renderers(make_report: ModuleType) -> None:
    """The result files in the repository render without the generic fallback."""
    report = make_report.build_report(ROOT / "benchmarks" / "results")
    assert "is not the one this report knows" not in report
