"""FileLock against a real second process: held, named, released by the kernel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtl_reco.runs import FileLock, Holder, LockHeldError

HOLD = """
import sys, time
from pathlib import Path
from mtl_reco.runs import FileLock, Holder
lock = FileLock(Path(sys.argv[1]), "test folder")
lock.acquire(Holder.current("holder-command --flag"))
print("held", flush=True)
time.sleep(120)
"""


def start_holder(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_process_is_turned_away_naming_the_holder(tmp_path):
    path = tmp_path / "data" / ".run.lock"
    proc = start_holder(path)
    try:
        with pytest.raises(LockHeldError) as err:
            FileLock(path, "data folder X").acquire()
        message = str(err.value)
        assert f"pid {proc.pid} on " in message
        assert "holder-command --flag" in message and "started 20" in message
        assert message.startswith("data folder X is locked by")
        assert err.value.holder is not None and err.value.holder.pid == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_sigkilled_holder_releases_and_is_reported_as_stale(tmp_path):
    path = tmp_path / ".run.lock"
    proc = start_holder(path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lock = FileLock(path)
    stale = lock.acquire()
    try:
        assert stale is not None and stale.pid == proc.pid
        assert stale.command == "holder-command --flag"
        assert lock.holder() is not None and lock.holder().pid == os.getpid()
    finally:
        lock.release()


def test_release_clears_the_holder_and_lets_the_next_one_in(tmp_path):
    path = tmp_path / ".run.lock"
    first = FileLock(path)
    assert first.acquire() is None
    with pytest.raises(LockHeldError):  # flock is per open file: same process too
        FileLock(path).acquire()
    first.release()
    first.release()  # idempotent
    assert path.read_text() == ""
    second = FileLock(path)
    assert second.acquire() is None  # a clean release leaves no stale holder
    second.release()


def test_holder_description_round_trips():
    me = Holder.current("kedro run --pipeline=train_mmoe")
    assert me.pid == os.getpid()
    assert Holder.parse('{"pid": 1}') is None and Holder.parse("") is None
    text = f'{{"pid": {me.pid}, "host": "{me.host}", "started": "{me.started}", '
    text += f'"command": "{me.command}"}}'
    assert Holder.parse(text) == me
    assert me.describe().startswith(f"pid {me.pid} on {me.host}, started ")
    assert time.time() > 0
