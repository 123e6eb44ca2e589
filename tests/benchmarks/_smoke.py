"""Helpers shared by the benchmark smoke tests: run a script, load make_report."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
RECHUB_HINT = 'Torch-RecHub comes with the bench extra (pip install -e ".[bench]").'


def run_script(
    cmd: Sequence[str], timeout: int = 300, hint: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` from the project root; fail with its output tails if it fails."""
    proc = subprocess.run(
        list(cmd),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}){'; ' + hint if hint else ''}\n"
        f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    )
    return proc


def quick_json_once(
    tmp_path_factory: pytest.TempPathFactory,
    script: str,
    args: Sequence[str] = (),
    launcher: Sequence[str] = (),
) -> tuple[Path, dict[str, Any]]:
    """``script --quick ARGS`` run once per test session; its JSON and path.

    ``launcher``: a script that runs ``script`` (``python LAUNCHER SCRIPT
    ...``), e.g. ``tests/benchmarks/_bare_python.py``.

    Under pytest-xdist every worker that gets a test of a module would run
    the script; the workers share the session's temporary root, so the first
    one runs it (under a file lock) and the others read its JSON.
    ``script`` is relative to the project root (the JSON records the command).
    """
    stem = Path(script).stem
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / f"{stem}_smoke"
    path = out / f"{stem}_quick.json"
    with FileLock(str(shared / f"{stem}_smoke.lock")):
        if not path.is_file():
            out.mkdir(exist_ok=True)
            cmd = [
                sys.executable,
                *launcher,
                script,
                "--quick",
                *args,
                "--results-dir",
                str(out),
            ]
            proc = run_script(cmd)
            assert path.is_file(), f"no JSON written; stdout:\n{proc.stdout[-4000:]}"
    return path, json.loads(path.read_text(encoding="utf-8"))


def load_make_report(module_name: str) -> ModuleType:
    """``benchmarks/make_report.py`` imported as ``module_name``."""
    if str(BENCH) not in sys.path:  # its ``import harness``
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(module_name, BENCH / "make_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
