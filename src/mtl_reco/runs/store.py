"""Staging, promotion, recovery, history and pruning of the runs over one data folder.

A run never writes where later runs read. Everything it saves goes to its own
staging folder, which mirrors the data folder; only when the whole run has
succeeded are the staged files moved into place (:meth:`RunStore.promote`),
so the files at the usual paths are always those of the last successful run
that wrote them. A failed or interrupted run's folder is moved, whole, to
``failed_runs/`` for inspection (:meth:`RunStore.fail`); nothing loads from
there. Layout inside the data folder::

    .run.lock                      the lock (one run at a time), see runs.lock
    .staging/<run_id>/run.json     a run in progress: who, what, status
    .staging/<run_id>/outputs/...  what it wrote, mirroring the data folder
    failed_runs/<run_id>/...       a failed, interrupted or killed run
    run_history.jsonl              one JSON line per finished run

Promotion is a sequence of same-filesystem renames: ``run.json`` is set to
``promoting`` first, so a process killed half-way leaves a record that the
next run (:meth:`RunStore.recover`, called with the lock held) rolls forward;
a staging folder still marked ``running`` belongs to a process that died
(the lock says no other run is live) and is moved to ``failed_runs/`` as
``killed``. Every method except :meth:`RunStore.history` must be called with
the data folder's lock held.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mtl_reco.runs.lock import FileLock

logger = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"
STAGING = ".staging"
FAILED = "failed_runs"
HISTORY = "run_history.jsonl"
RUN_FILE = "run.json"
OUTPUTS = "outputs"

VERSION_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z$")
"""A Kedro dataset version folder name (``2026-12-04T02.00.00.123Z``)."""

KILLED_MESSAGE = "the process ended without finishing the run (killed or crashed)"


class StoreError(RuntimeError):
    """The run store cannot do what was asked (the message says why)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _write_json(path: Path, record: Mapping[str, Any]) -> None:
    """Write ``record`` atomically (temporary sibling, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    """The runs over one data folder (see the module docstring).

    Args:
        data_dir: The project data folder (the unit of locking).
    """

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(os.path.abspath(data_dir))

    # -- paths ----------------------------------------------------------------------
    @property
    def staging_root(self) -> Path:
        """Folder of the runs in progress."""
        return self.data_dir / STAGING

    @property
    def failed_root(self) -> Path:
        """Folder of the failed, interrupted and killed runs."""
        return self.data_dir / FAILED

    @property
    def history_path(self) -> Path:
        """One JSON line per finished run."""
        return self.data_dir / HISTORY

    def lock(self) -> FileLock:
        """The data folder's lock (one run at a time)."""
        return FileLock(self.data_dir / LOCK_FILE, f"data folder {self.data_dir}")

    def run_dir(self, run_id: str) -> Path:
        """Staging folder of run ``run_id``."""
        return self.staging_root / run_id

    def holds(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is an artefact location inside the data folder."""
        absolute = Path(os.path.abspath(path))
        if not absolute.is_relative_to(self.data_dir) or absolute == self.data_dir:
            return False
        return not (
            absolute.is_relative_to(self.staging_root)
            or absolute.is_relative_to(self.failed_root)
        )

    def staged_path(self, run_id: str, path: str | os.PathLike[str]) -> Path:
        """Where run ``run_id`` writes the artefact that lives at ``path``."""
        absolute = Path(os.path.abspath(path))
        if not self.holds(absolute):
            raise StoreError(
                f"{absolute} is not inside the data folder {self.data_dir}"
            )
        return self.run_dir(run_id) / OUTPUTS / absolute.relative_to(self.data_dir)

    # -- a run's life ---------------------------------------------------------------
    def begin(self, run_id: str, info: Mapping[str, Any]) -> Path:
        """Create run ``run_id``'s staging folder and record it as running."""
        folder = self.run_dir(run_id)
        if folder.exists():
            raise StoreError(f"a run with id {run_id} is already staged in {folder}")
        (folder / OUTPUTS).mkdir(parents=True)
        record = {"run_id": run_id, "status": "running", "started": _now(), **info}
        _write_json(folder / RUN_FILE, record)
        return folder

    def promote(self, run_id: str) -> list[str]:
        """Move everything run ``run_id`` wrote into place; record its success.

        Every destination is checked before the first file moves (same
        filesystem as the staging folder, nothing of another kind in the
        way), so a promotion that cannot complete fails with nothing moved.

        Returns:
            The promoted files, relative to the data folder.

        Raises:
            StoreError: A destination cannot take its file (nothing moved).
        """
        folder = self.run_dir(run_id)
        record = self._record(folder)
        if record.get("status") != "promoting":
            self._check_destinations(folder / OUTPUTS)
            record["status"] = "promoting"
            _write_json(folder / RUN_FILE, record)
        moved = self._move_outputs(folder / OUTPUTS)
        record.update(status="succeeded", ended=_now(), files=len(moved))
        self._append_history(record)
        self._discard(folder)
        return moved

    def fail(self, run_id: str, status: str, error: str) -> Path:
        """Keep run ``run_id``'s outputs under ``failed_runs/``; record why.

        Args:
            run_id: The run.
            status: ``failed``, ``interrupted`` or ``killed``.
            error: One line saying what went wrong.

        Returns:
            The folder the run's outputs were moved to.
        """
        folder = self.run_dir(run_id)
        record = self._record(folder)
        target = self.failed_root / run_id
        record.update(status=status, ended=_now(), error=error, kept_in=str(target))
        _write_json(folder / RUN_FILE, record)
        self.failed_root.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)
        self._append_history(record)
        return target

    def recover(self) -> list[dict[str, Any]]:
        """Finish what runs that died left behind (call with the lock held).

        A run that died while promoting is promoted (it had succeeded); any
        other staged run is moved to ``failed_runs/`` as ``killed``.

        Returns:
            The records of the runs dealt with (``status`` says how).
        """
        if not self.staging_root.is_dir():
            return []
        done = []
        for folder in sorted(p for p in self.staging_root.iterdir() if p.is_dir()):
            if folder.name.startswith("."):  # discarded, not yet deleted
                shutil.rmtree(folder, ignore_errors=True)
                continue
            record = self._record(folder)
            if record.get("status") == "promoting":
                try:
                    self.promote(folder.name)
                except OSError as exc:
                    raise StoreError(
                        f"run {folder.name} had succeeded but making its outputs "
                        f"current stopped half-way and cannot be finished ({exc}); "
                        f"fix the cause, then rerun (its files are in {folder})"
                    ) from exc
                record["status"] = "succeeded"
                record["recovered"] = "promotion finished by a later run"
            else:
                self.fail(folder.name, "killed", KILLED_MESSAGE)
                record["status"] = "killed"
                record["kept_in"] = str(self.failed_root / folder.name)
            done.append(record)
        return done

    # -- history and pruning --------------------------------------------------------
    def history(self) -> list[dict[str, Any]]:
        """Every finished run, oldest first."""
        if not self.history_path.is_file():
            return []
        records = []
        for line in self.history_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    logger.warning("%s: skipping an unreadable line", self.history_path)
        return records

    def prune(
        self, keep_versions: int | None, keep_failed: int | None
    ) -> dict[str, Any]:
        """Delete old versions of versioned artefacts and old failed runs.

        Args:
            keep_versions: Newest versions kept per versioned artefact
                (``None``: keep all).
            keep_failed: Newest failed/interrupted/killed runs kept
                (``None``: keep all).

        Returns:
            What was removed (paths relative to the data folder) and the bytes
            freed.
        """
        for name, value in (
            ("keep_versions", keep_versions),
            ("keep_failed", keep_failed),
        ):
            if value is not None and value < 1:
                raise StoreError(f"{name} must be >= 1 or null, got {value}")
        removed: list[str] = []
        freed = 0
        if keep_versions is not None:
            for _artefact, versions in self._versioned():
                for version in versions[:-keep_versions]:
                    freed += _size(version)
                    shutil.rmtree(version)
                    removed.append(version.relative_to(self.data_dir).as_posix())
        failed: list[str] = []
        if keep_failed is not None and self.failed_root.is_dir():
            runs = sorted(p for p in self.failed_root.iterdir() if p.is_dir())
            for run in runs[:-keep_failed]:
                freed += _size(run)
                shutil.rmtree(run)
                failed.append(run.name)
        return {
            "versions_removed": removed,
            "failed_runs_removed": failed,
            "bytes_freed": freed,
        }

    # -- helpers --------------------------------------------------------------------
    def _record(self, folder: Path) -> dict[str, Any]:
        try:
            record = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
        record.setdefault("run_id", folder.name)
        record.setdefault("status", "running")
        return dict(record)

    def _move_outputs(self, outputs: Path) -> list[str]:
        if not outputs.is_dir():
            return []
        moved = []
        for src in sorted(outputs.rglob("*")):
            if src.is_dir() or (src.name.startswith(".") and src.name.endswith(".tmp")):
                continue
            rel = src.relative_to(outputs)
            dst = self.data_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            moved.append(rel.as_posix())
        return moved

    def _check_destinations(self, outputs: Path) -> None:
        """Raise :class:`StoreError` unless every staged file can be renamed in."""
        if not outputs.is_dir():
            return
        device = outputs.stat().st_dev
        for src in sorted(outputs.rglob("*")):
            if src.is_dir():
                continue
            dst = self.data_dir / src.relative_to(outputs)
            if dst.is_dir():
                raise StoreError(
                    f"cannot make {dst} current: a folder is in the way of the file "
                    "this run wrote (was the catalog entry's `versioned` changed?); "
                    "move it aside and rerun"
                )
            existing = dst.parent
            while not existing.exists():
                existing = existing.parent
            if existing.is_file() or not existing.is_dir():
                raise StoreError(
                    f"cannot make {dst} current: {existing} is a file, not a folder "
                    "(was the catalog entry's `versioned` changed?); move it aside "
                    "and rerun"
                )
            if existing.stat().st_dev != device:
                raise StoreError(
                    f"cannot make {dst} current: {existing} is on another "
                    f"filesystem than {self.staging_root} (a link or mount inside "
                    "the data folder); keep the data folder on one filesystem"
                )

    def _discard(self, folder: Path) -> None:
        """Remove a finished staging folder (renamed first: no half-deleted run)."""
        trash = folder.with_name(f".{folder.name}.done")
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _append_history(self, record: Mapping[str, Any]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_id = record.get("run_id")
        if any(
            r.get("run_id") == run_id and r.get("status") == record.get("status")
            for r in self.history()
        ):
            return  # recorded before a crash: once is enough
        with self.history_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _versioned(self) -> Iterator[tuple[Path, list[Path]]]:
        """``(artefact folder, its version folders, oldest first)`` per artefact."""
        skip = {self.staging_root, self.failed_root}
        for root, dirs, _files in os.walk(self.data_dir):
            here = Path(root)
            dirs[:] = [d for d in dirs if here / d not in skip]
            versions = sorted(
                here / d
                for d in dirs
                if VERSION_PATTERN.match(d) and (here / d / here.name).exists()
            )
            if versions:
                dirs[:] = [d for d in dirs if here / d not in versions]
                yield here, versions


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
