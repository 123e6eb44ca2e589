"""Checkpoint folders: resume only on identical settings, never a folder in use."""

from __future__ import annotations

import logging
import subprocess
import sys

from mtl_reco.experiment.checkpoints import CheckpointFolder, differences, resume_key

TRAINER = {
    "epochs": 8,
    "seed": 7,
    "optimizer": {"name": "adam", "lr": 0.005},
    "checkpoint_dir": "data/06_models/checkpoints",
    "resume": True,
    "progress": False,
    "log_every": 0,
}


def key(**trainer_changes) -> dict:
    trainer = {**TRAINER, **trainer_changes}
    return resume_key(
        trainer,
        model={"name": "mmoe", "params": {"n_experts": 3}},
        data={"train": "aaa", "valid": "bbb"},
    )


def interrupted(root, settings) -> CheckpointFolder:
    """A folder as a killed run leaves it: settings.json and last.pt."""
    folder = CheckpointFolder(root, "mmoe", settings, resume=True)
    where, _ = folder.open()
    (where / "last.pt").write_bytes(b"epoch 2")
    folder.close()
    return folder


def test_code_digest_is_stable_and_names_the_modeling_source():
    from mtl_reco.experiment.checkpoints import code_digest

    assert code_digest() == code_digest() and len(code_digest()) == 16


def test_key_leaves_out_only_what_cannot_change_the_result():
    flat = key()
    assert flat["trainer.optimizer.lr"] == 0.005 and flat["trainer.epochs"] == 8
    assert flat["data.train"] == "aaa" and flat["model.params.n_experts"] == 3
    for cosmetic in ("checkpoint_dir", "resume", "progress", "log_every"):
        assert f"trainer.{cosmetic}" not in flat
    assert key(progress=True, checkpoint_dir="elsewhere") == flat


def test_identical_settings_resume(tmp_path):
    interrupted(tmp_path, key())
    folder = CheckpointFolder(tmp_path, "mmoe", key(), resume=True)
    where, resumable = folder.open()
    assert where == tmp_path / "mmoe" and resumable
    assert (where / "last.pt").read_bytes() == b"epoch 2"
    folder.close()
    assert (tmp_path / "mmoe" / "last.pt").exists()  # the run guard deletes it


def test_any_difference_starts_fresh_and_says_which_keys(tmp_path, caplog):
    interrupted(tmp_path, key())
    changed = key(optimizer={"name": "adam", "lr": 0.05})
    changed["data.valid"] = "ccc"
    folder = CheckpointFolder(tmp_path, "mmoe", changed, resume=True)
    with caplog.at_level(logging.WARNING):
        where, resumable = folder.open()
    assert not resumable and not (where / "last.pt").exists()
    assert "trainer.optimizer.lr: 0.005 -> 0.05" in caplog.text
    assert "data.valid: bbb -> ccc" in caplog.text
    assert "starting fresh" in caplog.text
    folder.close()
    # the new settings are the folder's now: the same rerun would resume
    again = CheckpointFolder(tmp_path, "mmoe", changed, resume=True)
    (tmp_path / "mmoe" / "last.pt").write_bytes(b"epoch 1")
    assert again.open()[1]
    again.close()


def test_resume_off_never_resumes(tmp_path):
    interrupted(tmp_path, key())
    folder = CheckpointFolder(tmp_path, "mmoe", key(), resume=False)
    assert folder.open()[1] is False
    assert not (tmp_path / "mmoe" / "last.pt").exists()
    folder.close()


HOLD = """
import sys, time
from pathlib import Path
from mtl_reco.experiment.checkpoints import CheckpointFolder
folder = CheckpointFolder(Path(sys.argv[1]), "mmoe", {"a": 1}, resume=True)
folder.open()
print("held", flush=True)
time.sleep(120)
"""


def test_a_folder_in_use_by_a_live_run_is_never_picked_up(tmp_path, caplog):
    interrupted(tmp_path, {"a": 1})
    live = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "held"
        folder = CheckpointFolder(tmp_path, "mmoe", {"a": 1}, resume=True)
        with caplog.at_level(logging.WARNING):
            where, resumable = folder.open()
        assert not resumable and where != tmp_path / "mmoe"
        assert (
            f"pid {live.pid}" in caplog.text
            and "does not resume from it" in caplog.text
        )
        assert (tmp_path / "mmoe" / "last.pt").read_bytes() == b"epoch 2"  # untouched
        folder.close()  # the private folder goes; the live run's stays
        assert not where.exists() and (tmp_path / "mmoe" / "last.pt").exists()
    finally:
        live.kill()
        live.wait()


def test_differences_are_short_and_bounded():
    old = {f"k{i}": i for i in range(12)}
    new = {f"k{i}": i + 1 for i in range(12)}
    text = differences(old, new, limit=3)
    assert text.startswith("k0: 0 -> 1; k1: 1 -> 2; k10: 10 -> 11")
    assert text.endswith("... 9 more")
    assert differences({"a": "x" * 100}, {}) == f"a: {'x' * 37}... -> <unset>"
