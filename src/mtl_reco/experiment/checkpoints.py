"""Per-experiment checkpoint folders that are resumed only when nothing changed.

The trainer writes ``last.pt`` after every epoch and resumes from it exactly
(:mod:`mtl_reco.modeling.trainer`). Whether it *may* resume is decided here:
the folder ``<checkpoint_dir>/<experiment>/`` holds ``settings.json``, the
flattened settings that made the checkpoint -- the whole trainer
configuration except what cannot change the result (:data:`NOT_IN_KEY`), the
model and weighting specs, the feature schema, content hashes of the encoded
train and valid splits, the resolved device, the PyTorch version and a hash
of the modelling code (:func:`code_digest`: after an update the old
checkpoint is not resumed). A run resumes only when its settings are
identical; otherwise it logs which keys differ and starts fresh.

The folder outlives the training node: a run that fails later (evaluation,
export, another experiment) resumes from the final checkpoint at no cost.
The run guard deletes it once the run's outputs are current
(:mod:`mtl_reco.guard`). A folder in use by a live run (its ``.lock`` is
held, see :class:`mtl_reco.runs.FileLock`) is never picked up: a second run
trains without resuming, in a private folder deleted when it ends.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mtl_reco.modeling
from mtl_reco.runs import FileLock, LockHeldError
from mtl_reco.typed_config import flatten

logger = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
LOCK_FILE = ".lock"
NOT_IN_KEY = ("checkpoint_dir", "resume", "progress", "log_every")
"""Trainer settings that cannot change the trained model."""


def resume_key(trainer: Mapping[str, Any], **parts: Any) -> dict[str, Any]:
    """The flattened settings a checkpoint must match to be resumed.

    Args:
        trainer: The trainer configuration (``TrainerConfig.to_dict()``).
        **parts: Everything else that changes the result (model, weighting,
            feature schema, data fingerprints, device, library versions).
    """
    kept = {k: v for k, v in trainer.items() if k not in NOT_IN_KEY}
    return flatten({"trainer": kept, **parts})


@functools.cache
def code_digest() -> str:
    """Hash of the modelling library's source (models, weighting, trainer)."""
    digest = hashlib.sha256()
    root = Path(mtl_reco.modeling.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 8) -> str:
    """``trainer.optimizer.lr: 0.005 -> 0.05; data.train: a1b2c3 -> d4e5f6``."""
    keys = sorted(set(old) | set(new))
    changed = [k for k in keys if old.get(k, "<unset>") != new.get(k, "<unset>")]
    parts = [
        f"{k}: {_short(old.get(k, '<unset>'))} -> {_short(new.get(k, '<unset>'))}"
        for k in changed[:limit]
    ]
    if len(changed) > limit:
        parts.append(f"... {len(changed) - limit} more")
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


class CheckpointFolder:
    """The checkpoint folder of one experiment, held for one training run.

    Args:
        root: ``trainer.checkpoint_dir``.
        experiment: The experiment's name (one folder each).
        settings: :func:`resume_key` of this run.
        resume: ``trainer.resume``; ``False`` never resumes.

    Use :meth:`open` before training (it says where to checkpoint and whether
    resuming is allowed) and :meth:`close` after, however training ended.
    """

    def __init__(
        self, root: Path, experiment: str, settings: Mapping[str, Any], resume: bool
    ) -> None:
        self.root = Path(root)
        self.experiment = experiment
        # as JSON gives it back, so a saved copy compares equal
        self.settings = json.loads(json.dumps(dict(settings), default=str))
        self.resume = resume
        self.folder = self.root / experiment
        self._private = False
        self._lock: FileLock | None = None

    def open(self) -> tuple[Path, bool]:
        """Lock the folder and decide whether its checkpoint may be resumed.

        Returns:
            The folder to checkpoint into and whether to resume from it.
        """
        lock = FileLock(self.folder / LOCK_FILE, f"checkpoint folder {self.folder}")
        try:
            lock.acquire()
        except LockHeldError as exc:
            private = self.root / f"{self.experiment}.pid{os.getpid()}"
            logger.warning(
                "%s; this run does not resume from it or touch it and checkpoints "
                "into %s instead",
                exc,
                private,
            )
            self.folder = private
            self._private = True
            lock = FileLock(self.folder / LOCK_FILE, f"checkpoint folder {private}")
            lock.acquire()
            (self.folder / "last.pt").unlink(missing_ok=True)
            self._lock = lock
            self._write_settings()
            return self.folder, False
        self._lock = lock
        resumable = False
        checkpoint = self.folder / "last.pt"
        if checkpoint.exists():
            saved = self._read_settings()
            if not self.resume:
                logger.info("trainer.resume is off: not resuming from %s", checkpoint)
            elif saved == self.settings:
                resumable = True
            else:
                logger.warning(
                    "not resuming from %s: it was made with other settings (%s); "
                    "starting fresh",
                    checkpoint,
                    differences(saved or {}, self.settings)
                    if saved
                    else "its settings.json is missing",
                )
            if not resumable:
                checkpoint.unlink()
        self._write_settings()
        return self.folder, resumable

    def close(self) -> None:
        """Release the folder (a private one is deleted; the shared one stays)."""
        lock, self._lock = self._lock, None
        if self._private:
            shutil.rmtree(self.folder, ignore_errors=True)
        if lock is not None:
            lock.release()

    def _read_settings(self) -> dict[str, Any] | None:
        try:
            raw = json.loads((self.folder / SETTINGS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return raw if isinstance(raw, dict) else None

    def _write_settings(self) -> None:
        path = self.folder / SETTINGS_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(
            json.dumps(self.settings, indent=1, default=str), encoding="utf-8"
        )
        os.replace(tmp, path)
