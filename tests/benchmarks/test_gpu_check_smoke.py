"""Smoke test of ``benchmarks/gpu_check.py --quick`` (subprocess) and its rules.

The quick run takes every stage on the CPU at tiny sizes, under
``_bare_python.py``: Kedro, MLflow, Great Expectations, Torch-RecHub,
scikit-learn, SciPy and matplotlib cannot be imported, as on a bare GPU
machine. With the CPU standing in for the GPU, the "device" runs of the
agreement stage are the CPU runs again, so they must match them exactly;
the tolerance rule, the failure path, the time budget and the one-line
refusals are checked on their own. Timings are not asserted (DESIGN
section 6), only their consistency.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from _smoke import ROOT, quick_json_once

SCRIPT = "benchmarks/gpu_check.py"  # relative: the JSON records this command
BARE = "tests/benchmarks/_bare_python.py"
ARCHS = ("shared_bottom", "esmm", "mmoe", "ple", "aitm")
SETTINGS = ("fp32", "bf16", "fp32_host", "bf16_host", "bf16_compiled")
STRATEGIES = ("fixed", "uwl", "gradnorm", "metabalance", "dwa", "pcgrad")

Quick = tuple[Path, dict[str, Any]]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Quick:
    return quick_json_once(tmp_path_factory, SCRIPT, ("--threads", "1"), (BARE,))


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module("gpu_check")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def test_every_stage_ran_and_passed_without_kedro_mlflow_or_sklearn(
    quick: Quick,
) -> None:
    _, doc = quick
    res = doc["results"]
    assert doc["benchmark"] == "gpu_check_quick"
    assert doc["command"].startswith(f"python {SCRIPT} --quick")
    assert res["errors"] == [] and res["failed"] == [] and res["passed"] is True
    stages = {"device", "data", "agreement", "weighting", "throughput", "onnx"}
    assert stages | {"throughput_compiled"} <= set(res["stage_s"])
    assert res["device"]["device"] == "cpu"
    assert res["device"]["torch"] == torch.__version__
    assert res["device"]["matmul"]["bf16_tflops"] > 0
    assert res["device"]["matmul"]["fp32_tflops"] > 0
    assert res["data"]["rows"] == 20_000 and res["data"]["source"] == "simulated"
    assert sum(s["rows"] for s in res["data"]["splits"].values()) == 20_000
    assert "All checks passed." in doc["notes"]


def test_device_runs_on_the_cpu_match_the_cpu_runs_exactly(quick: Quick) -> None:
    _, doc = quick
    models = doc["results"]["agreement"]["models"]
    assert set(models) == set(ARCHS)
    for arch, entry in models.items():
        runs = entry["runs"]
        assert set(runs) == {"cpu", "cpu_seed2", "fp32", "bf16"}
        assert all(r["finite"] and not r["amp_effective"] for r in runs.values())
        assert runs["bf16"]["amp"] is True
        # another seed is another model: that gap is the noise scale
        assert runs["cpu_seed2"]["valid_auc"] != runs["cpu"]["valid_auc"], arch
        for key in ("fp32", "bf16"):
            cmp = entry[key]
            assert cmp["abs_diff_auc"] == 0.0 and cmp["rel_diff_loss"] == 0.0, arch
            assert cmp["agree"] is True
            noise = cmp["seed_noise"]
            assert cmp["tolerance_auc"] == pytest.approx(max(2 * noise["auc"], 0.005))
            assert cmp["tolerance_loss"] == pytest.approx(
                max(2 * noise["loss_rel"], 0.01)
            )
            assert cmp["valid_mean_auc"] == runs[key]["valid_auc"]["mean.auc"]


def test_every_weighting_strategy_trained_finite(quick: Quick) -> None:
    _, doc = quick
    weighting = doc["results"]["weighting"]
    runs = weighting["runs"]
    assert set(runs) == {f"{s}.{p}" for s in STRATEGIES for p in ("fp32", "bf16")}
    for key, run in runs.items():
        assert run["finite"], key
        assert run["weighting"] == key.split(".")[0]
        assert run["steps"] == weighting["steps"]


def test_throughput_covers_every_model_size_and_setting(quick: Quick) -> None:
    _, doc = quick
    rows = doc["results"]["throughput"]
    seen = {(r["size"], r["model"], r["setting"]) for r in rows}
    assert seen == {
        (s, a, x) for s in ("light", "heavy") for a in ARCHS for x in SETTINGS
    }
    batch = doc["config"]["batch"]
    for r in rows:
        assert "skipped" not in r and "error" not in r, r
        assert r["batch_size"] == batch[r["size"]]
        assert r["steps"] == doc["config"]["timed_steps"]
        assert r["finite"] and r["samples_per_s"] > 0
        best = min(r["timed_s"])
        assert r["samples_per_s"] == pytest.approx(r["steps"] * r["batch_size"] / best)
        tflops = 3 * r["forward_mflop_per_sample"] * 1e6 * r["samples_per_s"] / 1e12
        assert r["train_tflops"] == pytest.approx(tflops)
        assert r["peak_gpu_mem_mb"] is None  # no CUDA memory on the CPU
        assert r["amp_effective"] is False
        compiled = r["setting"] == "bf16_compiled"
        assert r["compile_backend"] == ("aot_eager" if compiled else None)
        assert r["table"] == ("host" if r["setting"].endswith("_host") else "device")


def test_onnx_parity_target_and_tables(quick: Quick) -> None:
    _, doc = quick
    res = doc["results"]
    onnx = res["onnx"]
    assert onnx["exporter"] in ("dynamo", "legacy")
    assert onnx["rows"] == 512 and onnx["parity"] is True
    assert onnx["max_abs_diff_vs_device_torch"] <= 1e-4
    assert onnx["max_abs_diff_vs_cpu_torch"] <= 1e-4
    target = res["targets"]["heavy_mmoe_bf16_device_table"]
    assert target["applies"] is False and target["met"] is None  # CPU, tiny batch
    bf16 = [
        r["samples_per_s"]
        for r in res["throughput"]
        if (r["size"], r["model"], r["table"], r["amp"])
        == ("heavy", "mmoe", "device", True)
    ]
    assert target["best_samples_per_s"] == max(bf16)
    titles = [t["title"] for t in doc["tables"]]
    assert titles[0].startswith("**CPU/GPU agreement**")
    assert sum("Training samples/s" in t for t in titles) == 2
    assert "bf16, compiled" in doc["tables"][1]["columns"]
    assert any(n.startswith("**ONNX parity**") for n in doc["notes"])


def test_agreement_rule(gpu_check: ModuleType) -> None:
    def run(auc: float, loss: float) -> dict[str, Any]:
        return {
            "valid_auc": {"mean.auc": auc},
            "train_loss": {"total": loss},
            "finite": math.isfinite(auc) and math.isfinite(loss),
        }

    cpu, other = run(0.700, 1.00), run(0.690, 1.03)  # noise: 0.01 AUC, 3 % loss
    assert gpu_check.compare_runs(cpu, other, run(0.719, 1.05))["agree"] is True
    assert gpu_check.compare_runs(cpu, other, run(0.721, 1.00))["agree"] is False
    assert gpu_check.compare_runs(cpu, other, run(0.700, 1.061))["agree"] is False
    assert gpu_check.compare_runs(cpu, other, run(math.nan, 1.00))["agree"] is False
    # identical seeds give no noise: the floors hold
    same = gpu_check.compare_runs(cpu, cpu, run(0.704, 1.009))
    assert same["tolerance_auc"] == 0.005 and same["agree"] is True
    assert gpu_check.compare_runs(cpu, cpu, run(0.706, 1.0))["agree"] is False


def test_a_broken_stage_is_recorded_and_fails_the_check(
    gpu_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(gpu_check, "export_onnx", broken)
    argv = ["--quick", "--stages", "onnx", "--models", "mmoe", "--out", str(tmp_path)]
    assert gpu_check.main(argv) == 1
    doc = json.loads((tmp_path / "gpu_check_quick.json").read_text(encoding="utf-8"))
    res = doc["results"]
    assert res["passed"] is False
    assert [e["where"] for e in res["errors"]] == ["onnx"]
    assert res["errors"][0]["error"] == "RuntimeError: exporter exploded"
    assert "onnx" not in res  # nothing half-measured is reported
    assert any(n.startswith("1 check(s) failed:") for n in doc["notes"])


def test_compiled_runs_past_the_budget_are_skipped_and_said_so(tmp_path: Path) -> None:
    proc = _run(
        "--quick",
        "--stages", "throughput",
        "--models", "mmoe",
        "--sizes", "light",
        "--budget-s", "0.001",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu_check_quick.json").read_text(encoding="utf-8"))
    by_setting = {r["setting"]: r for r in doc["results"]["throughput"]}
    assert set(by_setting) == {*SETTINGS}
    assert "time budget" in by_setting["bf16_compiled"]["skipped"]
    assert all("samples_per_s" in by_setting[s] for s in SETTINGS[:4])
    assert "skipped (time budget)" in proc.stdout


def test_a_gpu_that_is_not_there_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = _run("--device", "cuda:99", "--out", str(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: device 'cuda:99'")
    assert "--quick runs the check on the CPU" in lines[0]
    assert not list(tmp_path.iterdir())  # nothing written


def test_missing_pydantic_names_the_fix(tmp_path: Path) -> None:
    shim = tmp_path / "shim" / "pydantic"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pydantic'\", name='pydantic')\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim.parent), "src"])}
    proc = _run("--quick", "--out", str(tmp_path / "out"), env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "No module named 'pydantic'" in lines[0]
    assert "benchmarks/README.md" in lines[0]
