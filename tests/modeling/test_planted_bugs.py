"""The golden tests catch known wrong formulations (a meta-test).

Each entry of :data:`PLANTED` is a wrong formulation written as an exact text
replacement in one source file of ``mtl_reco``. The test copies the package
to a temporary folder, applies the replacement there, and runs the golden
tests (:mod:`.test_golden`) in a subprocess that imports the copy first; the
subprocess must fail. The unpatched copy must pass, so the failures come
from the planted formulation and not from the copying.

When a refactor moves or rewrites a target line, the replacement no longer
applies and the test fails with "patch target not found": update the entry
to the new code (the bug it plants must stay the same), never delete it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

import mtl_reco


class Planted(NamedTuple):
    """A wrong formulation: replace ``target`` by ``bug`` in ``path``."""

    path: str  # relative to the mtl_reco package
    target: str
    bug: str
    catches: str  # the golden tests of this model must be among the failures


PLANTED: dict[str, Planted] = {
    # AITM's attention scores without the 1/sqrt(d) scaling
    "aitm-unscaled-attention": Planted(
        "modeling/models/aitm.py",
        "scores = (self.h1(u) * self.h2(u)).sum(-1) * self.scale",
        "scores = (self.h1(u) * self.h2(u)).sum(-1)",
        "aitm",
    ),
    # PLE: each level after the first reads another task's mixture
    "ple-swapped-task-paths": Planted(
        "modeling/models/ple.py",
        "task_inputs, shared_input = level(task_inputs, shared_input, level_record)",
        "task_inputs, shared_input = level("
        "task_inputs[::-1], shared_input, level_record)",
        "ple",
    ),
    # MMoE's gates computed from a detached input (no gradient into the embedding)
    "mmoe-detached-gate-input": Planted(
        "modeling/models/mmoe.py",
        "self._gates(x)",
        "self._gates(x.detach())",
        "mmoe",
    ),
}

PACKAGE = Path(mtl_reco.__file__).resolve().parent
TESTS = Path(__file__).resolve().parent
GOLDEN = TESTS / "test_golden.py"
ROOT = TESTS.parents[1]

# Runs in the child: report which mtl_reco was imported, then run pytest.
CHILD = """
import importlib, os, sys
import mtl_reco
module = importlib.import_module(os.environ["PLANTED_MODULE"])
print("IMPORTED", mtl_reco.__file__, module.__file__, flush=True)
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def copy_package(dest: Path) -> Path:
    """Copy the installed ``mtl_reco`` to ``dest/mtl_reco``; return ``dest``."""
    shutil.copytree(PACKAGE, dest / "mtl_reco", ignore=shutil.ignore_patterns("*.pyc"))
    return dest


def apply_patch(root: Path, planted: Planted) -> None:
    """Replace the one occurrence of ``planted.target`` (fail loudly otherwise)."""
    path = root / "mtl_reco" / planted.path
    source = path.read_text()
    count = source.count(planted.target)
    if count != 1:
        what = "patch target not found" if count == 0 else f"{count} patch targets"
        pytest.fail(
            f"{what} in {planted.path}: {planted.target!r}; the code moved or "
            "changed, update PLANTED so that it plants the same bug again",
            pytrace=False,
        )
    path.write_text(source.replace(planted.target, planted.bug))


def run_golden(root: Path, module: str) -> tuple[int, str]:
    """Run the golden tests in a subprocess importing ``root/mtl_reco`` first."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "PYTHON", "COV_CORE"))
    }
    env["PYTHONPATH"] = str(root)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PLANTED_MODULE"] = module
    args = [str(GOLDEN), "-q", "-n", "0", "-p", "no:cacheprovider", "-o", "addopts="]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    match = re.search(r"^IMPORTED (\S+) (\S+)$", output, re.MULTILINE)
    assert match, f"the child did not start:\n{output}"
    for imported in match.groups():
        assert Path(imported).resolve().is_relative_to(root.resolve()), (
            f"the child imported {imported}, not the copy in {root}"
        )
    return proc.returncode, output


def _module_name(planted: Planted) -> str:
    return "mtl_reco." + planted.path.removesuffix(".py").replace("/", ".")


@pytest.mark.parametrize("bug", sorted(PLANTED))
def test_planted_bug_fails_the_golden_tests(bug: str, tmp_path: Path) -> None:
    planted = PLANTED[bug]
    root = copy_package(tmp_path)
    apply_patch(root, planted)
    assert planted.bug in (root / "mtl_reco" / planted.path).read_text()
    code, output = run_golden(root, _module_name(planted))
    failed = re.findall(r"^FAILED (\S+)", output, re.MULTILINE)
    print(f"{bug}: {len(failed)} golden test(s) fail")
    for test_id in failed:
        print("  ", test_id)
    # 1: tests ran and some failed (not 2-4: interrupted, internal or usage error)
    assert code == 1, f"{bug} went unnoticed (exit code {code}):\n{output[-4000:]}"
    assert any(planted.catches in t for t in failed), output[-4000:]


def test_a_missing_patch_target_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "mtl_reco").mkdir()
    (tmp_path / "mtl_reco" / "x.py").write_text("a = 1\n")
    with pytest.raises(pytest.fail.Exception, match=r"patch target not found in x\.py"):
        apply_patch(tmp_path, Planted("x.py", "a = 2", "a = 3", "x"))
    (tmp_path / "mtl_reco" / "x.py").write_text("a = 2\na = 2\n")
    with pytest.raises(pytest.fail.Exception, match=r"2 patch targets in x\.py"):
        apply_patch(tmp_path, Planted("x.py", "a = 2", "a = 3", "x"))


def test_unpatched_copy_passes_the_golden_tests(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    code, output = run_golden(root, "mtl_reco.modeling.models.registry")
    assert code == 0, output[-4000:]
    assert re.search(r"\d+ passed", output), output[-2000:]
