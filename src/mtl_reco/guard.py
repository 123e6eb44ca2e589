"""The run guard: what makes an unattended ``kedro run`` safe to leave alone.

:class:`RunGuardHook` wraps every pipeline run:

1. **Checks first** (:func:`mtl_reco.preflight.check_run`): parameter block
   names, dataset, device, experiment requirements, inputs that must exist.
   Nothing has been locked or written when one fails.
2. **One run at a time per data folder**: an exclusive lock on
   ``<data_dir>/.run.lock`` (:class:`mtl_reco.runs.FileLock`), released when
   the run ends however it ends; a second run fails at once naming the
   holder (pid, host, start time, command). A lock left by a process that
   died is taken over with a warning, and what that run left behind is
   finished (:meth:`mtl_reco.runs.RunStore.recover`).
3. **Outputs become current only when the run succeeds**: every catalog
   entry the pipeline writes inside the data folder is replaced, for this
   run, by a :class:`~mtl_reco.datasets.staged.StagedDataset` that saves into
   ``<data_dir>/.staging/<run_id>/`` and reads from there (else from the
   current artefact). After the last node the staged files are moved into
   place; after a failure, SIGTERM or Ctrl-C they are moved to
   ``<data_dir>/failed_runs/<run_id>/`` instead and nothing a later run loads
   has changed. Every run is one line of ``<data_dir>/run_history.jsonl``.
4. **Pruning**: after each successful run, versions beyond
   ``runs.keep_versions`` per versioned artefact and failed runs beyond
   ``runs.keep_failed`` are deleted (``kedro run --pipelines=prune`` does it
   on demand).

The data folder is ``data_dir`` from ``conf/<env>/globals.yml`` (default
``data``), the folder every catalog path is written under. Catalog entries
outside it (another disk, ``s3://``) are written in place, with a warning.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset, MemoryDataset
from kedro.pipeline import Pipeline

from mtl_reco import preflight
from mtl_reco.datasets.staged import StagedDataset
from mtl_reco.experiment import trained_experiments
from mtl_reco.runs import FileLock, Holder, LockHeldError, RunStore, StoreError
from mtl_reco.runs.config import RunsConfig

logger = logging.getLogger(__name__)

_PATH_KEYS = ("filepath", "path")
_RUNNER_LOGGERS = (
    "kedro.runner.runner",
    "kedro.runner.sequential_runner",
    "kedro.runner.thread_runner",
    "kedro.runner.parallel_runner",
)


class RunInterrupted(Exception):  # noqa: N818 - reads as what happened
    """The run received SIGTERM or SIGINT (raised inside the run so it unwinds)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"run interrupted by {signal.Signals(signum).name}")


def data_folder(context: Any) -> Path:
    """The session's data folder: ``data_dir`` of ``globals.yml``, absolute."""
    try:
        data_dir = context.config_loader["globals"].get("data_dir", "data")
    except Exception:  # no globals file: the default folder
        data_dir = "data"
    path = Path(str(data_dir))
    return path if path.is_absolute() else Path(context.project_path) / path


def one_line(error: BaseException) -> str:
    """The error as one line (its type when the message is empty)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


class _DropResumeHint(logging.Filter):
    """Kedro's "--from-nodes" advice after a failure does not hold here.

    It names nodes whose inputs the failed run wrote; those were never made
    current, so resuming from them would read the last successful run's
    artefacts instead. The guard logs what to do instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            "nodes that have not run" in message
            or "Repeat the previous command" in message
        )


class _Quiet(logging.Filter):
    """Hide the catalog's "Replacing dataset" warning while the guard swaps entries."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Replacing dataset")


@contextmanager
def _quiet_catalog() -> Iterator[None]:
    target = logging.getLogger("kedro.io.data_catalog")
    quiet = _Quiet()
    target.addFilter(quiet)
    try:
        yield
    finally:
        target.removeFilter(quiet)


class RunGuardHook:
    """Checks, lock, staging and promotion around every pipeline run."""

    def __init__(self) -> None:
        self._project = Path.cwd()
        self._params: dict[str, Any] = {}
        self._data_dir = Path("data")
        self._store: RunStore | None = None
        self._lock: FileLock | None = None
        self._run_id: str | None = None
        self._staged: dict[str, tuple[dict[str, Any], str | None]] = {}
        self._signals: dict[int, Any] = {}
        self._begun = False
        self._hint_filter = _DropResumeHint()
        self._files_problem: str | None = None

    # -- hooks ------------------------------------------------------------------------
    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """Read the raw parameters and the data folder of the session."""
        self._project = Path(context.project_path)
        params, self._files_problem = _with_source_files(
            dict(context.config_loader["parameters"]), context
        )
        self._params = params
        if preflight.remember_parameters(params):
            _reset_registered_pipelines()
        self._data_dir = data_folder(context)

    @hook_impl(wrapper=True)
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> Iterator[None]:
        """Lock, recover what dead runs left, check, stage this run's outputs.

        A wrapper: this runs before every other hook's ``before_pipeline_run``
        (the MLflow runs are opened after the checks), and if one of them
        fails the lock is released and the staged run recorded as failed.
        """
        from kedro.framework.project import pipelines as registered

        store = RunStore(self._data_dir)
        _check_runs_block(self._params, store.data_dir, self._project)
        lock = store.lock()
        stale = lock.acquire()
        self._store, self._lock = store, lock
        try:
            if stale is not None:
                logger.warning(
                    "took over the lock of %s from %s: that process is gone",
                    store.data_dir,
                    stale.describe(),
                )
            recovered = store.recover()
            for record in recovered:
                _log_recovered(record)
            if recovered:
                self._prune(failed_only=True)
            if self._files_problem and any(
                "params:sources" in n.inputs for n in pipeline.nodes
            ):
                raise preflight.PreflightError(self._files_problem)
            # the checks read the artefacts as recovery left them
            for note in preflight.check_run(
                self._params,
                pipeline,
                catalog,
                dict(registered),
                run_params.get("load_versions") or {},
            ):
                logger.info("%s", note)
            self._run_id = str(run_params["run_id"])
            outside = self._stage(pipeline, catalog, store, self._run_id, run_params)
            if outside:
                logger.warning(
                    "written in place, not staged (outside the data folder %s or "
                    "without a local path): %s",
                    store.data_dir,
                    ", ".join(outside),
                )
            self._install_signal_handlers(str(run_params.get("runner") or ""))
            for name in _RUNNER_LOGGERS:
                logging.getLogger(name).addFilter(self._hint_filter)
            yield
        except BaseException as error:
            if self._begun:
                self._keep_failed(error)
            self._finish()
            raise

    @hook_impl(wrapper=True)
    def after_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> Iterator[None]:
        """Make the run's outputs current and prune; release the lock last.

        A wrapper: promotion happens before the other hooks' end-of-run work
        (the MLflow summary then names the current files) and the lock is
        released after it (no run can start while this one closes its MLflow
        runs).
        """
        store, run_id = self._store, self._run_id
        try:
            if store is not None and run_id is not None:
                with self._signals_deferred():
                    try:
                        moved = store.promote(run_id)
                    except StoreError as exc:  # nothing moved: a failed run
                        self._keep_failed(exc)
                        raise
                    self._begun = False
                    self._restore(catalog, run_params)
                    self._drop_checkpoints(pipeline)
                pruned = self._prune(failed_only=False)
                logger.info(
                    "run %s succeeded: %d file(s) now current in %s%s",
                    run_id,
                    len(moved),
                    store.data_dir,
                    _pruned_text(pruned),
                )
            yield
        finally:
            self._finish()

    @hook_impl(wrapper=True)
    def on_pipeline_error(self, error: Exception, catalog: Any) -> Iterator[None]:
        """Keep the failed run's outputs aside; release the lock last."""
        try:
            if self._begun:
                self._keep_failed(error)
            yield
        finally:
            self._finish()

    # -- a run's end ------------------------------------------------------------------
    def _keep_failed(self, error: BaseException) -> None:
        """Move the staged run to ``failed_runs/`` (never raises)."""
        store, run_id = self._store, self._run_id
        if store is None or run_id is None:
            return
        self._begun = False
        status = "interrupted" if isinstance(error, RunInterrupted) else "failed"
        try:
            with self._signals_deferred():
                kept = store.fail(run_id, status, one_line(error))
            self._prune(failed_only=True)
        except Exception:  # never hide the run's own error
            logger.exception("could not move the failed run's outputs aside")
            return
        logger.error(
            "run %s %s: nothing it wrote became current (the last successful "
            "run's artefacts are still the ones loaded); its outputs are kept in "
            "%s. Fix the cause and repeat the same command (training resumes "
            "from its checkpoint when nothing else changed).",
            run_id,
            status,
            kept,
        )

    def _prune(self, failed_only: bool) -> dict[str, Any]:
        """Prune history as ``runs`` says; a problem is a warning, not a failure."""
        if self._store is None:
            return {}
        runs = RunsConfig.from_dict(self._params.get("runs"))
        try:
            return self._store.prune(
                None if failed_only else runs.keep_versions, runs.keep_failed
            )
        except Exception:
            logger.warning("pruning %s failed", self._store.data_dir, exc_info=True)
            return {}

    def _drop_checkpoints(self, pipeline: Pipeline) -> None:
        """Delete the checkpoints of the experiments this successful run trained.

        They are kept until the run's outputs are current, so a run that
        fails after training (evaluation, export, another experiment) resumes
        from them instead of training again. A folder in use is left alone.
        """
        root = (self._params.get("trainer") or {}).get("checkpoint_dir")
        if not root:
            return
        for experiment in trained_experiments(pipeline.nodes):
            folder = Path(root) / experiment
            if not folder.is_dir():
                continue
            lock = FileLock(folder / ".lock")
            try:
                lock.acquire()
            except LockHeldError:
                continue
            lock.release()
            shutil.rmtree(folder, ignore_errors=True)

    # -- staging ----------------------------------------------------------------------
    def _stage(
        self,
        pipeline: Pipeline,
        catalog: Any,
        store: RunStore,
        run_id: str,
        run_params: Mapping[str, Any],
    ) -> list[str]:
        """Point every output inside the data folder at the run's staging folder."""
        load_versions = run_params.get("load_versions") or {}
        outside: list[str] = []
        plans = []
        for name in sorted(pipeline.all_outputs()):
            dataset = catalog.get(name)
            if dataset is None or isinstance(dataset, MemoryDataset):
                continue  # in memory: lives and dies with the run
            config = catalog.config_resolver.resolve_pattern(name)
            key = next((k for k in _PATH_KEYS if isinstance(config.get(k), str)), None)
            if key is None:  # a nested dataset, a database, an API: not staged
                outside.append(name)
                continue
            target = str(config[key])
            if "://" in target and not target.startswith("file://"):
                outside.append(name)
                continue
            target = target.removeprefix("file://")
            if not store.holds(target):
                outside.append(name)
                continue
            plans.append((name, dataset, dict(config), key, target))
        store.begin(
            run_id,
            {
                "pipelines": run_params.get("pipeline_names") or ["__default__"],
                "env": run_params.get("env"),
                "command": Holder.current().command,
                "outputs": [name for name, *_ in plans],
                "runtime_params": run_params.get("runtime_params") or {},
            },
        )
        self._begun = True
        with _quiet_catalog():
            for name, current, config, key, target in plans:
                staged_config = {
                    **config,
                    key: store.staged_path(run_id, target).as_posix(),
                }
                version = load_versions.get(name)
                staged_dataset = AbstractDataset.from_config(
                    name, staged_config, version, run_id
                )
                catalog[name] = StagedDataset(staged_dataset, current)
                self._staged[name] = (config, version)
        logger.info(
            "run %s: %d output(s) staged in %s until the run succeeds",
            run_id,
            len(plans),
            store.run_dir(run_id),
        )
        return outside

    def _restore(self, catalog: Any, run_params: Mapping[str, Any]) -> None:
        """Put fresh, unstaged entries back: they load what was just promoted."""
        with _quiet_catalog():
            for name, (config, version) in self._staged.items():
                catalog[name] = AbstractDataset.from_config(
                    name, config, version, str(run_params["run_id"])
                )

    # -- signals and clean-up ---------------------------------------------------------
    def _install_signal_handlers(self, runner: str) -> None:
        """SIGTERM/SIGINT raise :class:`RunInterrupted` inside the run.

        Only with the sequential runner, whose nodes run in this thread: the
        thread and process pools of the other runners wait for their running
        nodes before an exception can unwind. With those a signal keeps its
        default effect (the process ends; the next run files it as killed).
        """
        if threading.current_thread() is not threading.main_thread():
            return
        if runner and "SequentialRunner" not in runner:
            return

        def interrupt(signum: int, _frame: Any) -> None:
            raise RunInterrupted(signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            self._signals[signum] = signal.signal(signum, interrupt)

    @contextmanager
    def _signals_deferred(self) -> Iterator[None]:
        """Let a promotion or a clean-up finish; say so if a signal came meanwhile."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        seen: list[int] = []

        def remember(signum: int, _frame: Any) -> None:
            seen.append(signum)

        previous = {
            s: signal.signal(s, remember) for s in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for number in seen:
                logger.warning(
                    "%s arrived while the run's outputs were being moved; that "
                    "finished first",
                    signal.Signals(number).name,
                )

    def _finish(self) -> None:
        for signum, handler in self._signals.items():
            signal.signal(signum, handler)
        self._signals = {}
        for name in _RUNNER_LOGGERS:
            logging.getLogger(name).removeFilter(self._hint_filter)
        if self._lock is not None:
            self._lock.release()
        self._lock = None
        self._store = None
        self._run_id = None
        self._begun = False
        self._staged = {}


def _check_runs_block(params: Mapping[str, Any], data_dir: Path, project: Path) -> None:
    """``runs.data_dir`` must name the data folder the catalog writes to."""
    runs = RunsConfig.from_dict(params.get("runs"))
    path = Path(runs.data_dir)
    resolved = Path(os.path.abspath(path if path.is_absolute() else project / path))
    if resolved != data_dir:
        raise preflight.PreflightError(
            f"runs.data_dir is {runs.data_dir!r} but the catalog writes to "
            f"{data_dir}: set data_dir in globals.yml instead (the catalog and "
            "runs.data_dir both follow it)"
        )


def _with_source_files(
    params: dict[str, Any], context: Any
) -> tuple[dict[str, Any], str | None]:
    """The parameters the checks read: each source's block plus its catalog files.

    A source's input files are the catalog entry ``<source>_files``
    (:class:`~mtl_reco.datasets.SourceFilesDataset`), which the ingestion node
    merges into the source's options; the checks before the first node (and
    the registry's choice of experiments) read the parameters only, so they
    get the same merge here. Loading such an entry opens nothing.

    Returns:
        The parameters with ``sources`` merged, and the first problem found
        (a file option set both in the parameters and in the catalog), which
        fails a run that reads ``sources`` before anything is written.
    """
    from mtl_reco.datasets.source_files import SourceFilesDataset
    from mtl_reco.processing.ingestion import source_options
    from mtl_reco.sources.base import SourceError
    from mtl_reco.sources.registry import available_sources

    try:
        config = dict(context.config_loader["catalog"])
    except Exception:  # no catalog configuration: nothing to merge
        return params, None
    sources = dict(params.get("sources") or {})
    problem = None
    for name, entry in config.items():
        source = name.removesuffix("_files")
        if not (name.endswith("_files") and source in available_sources()):
            continue
        if not isinstance(entry, Mapping):
            continue
        if str(entry.get("type", "")).rpartition(".")[2] != "SourceFilesDataset":
            continue
        try:  # only `files` matters here (credentials are for exists/preview)
            dataset = SourceFilesDataset(files=entry.get("files"))
        except Exception:  # a broken entry fails where Kedro builds the catalog
            continue
        try:
            sources[source] = source_options(source, sources, dataset.load())
        except SourceError as exc:
            problem = problem or str(exc)
    if not sources:
        return params, problem
    return {**params, "sources": sources}, problem


def _log_recovered(record: Mapping[str, Any]) -> None:
    if record.get("status") == "succeeded":
        logger.warning(
            "run %s had succeeded but was stopped while making its outputs "
            "current; finished that now",
            record.get("run_id"),
        )
    else:
        logger.warning(
            "run %s (%s) did not finish: its process is gone; nothing it wrote "
            "became current, its outputs are kept in %s",
            record.get("run_id"),
            record.get("command", "?"),
            record.get("kept_in"),
        )


def _pruned_text(pruned: Mapping[str, Any]) -> str:
    versions = len(pruned.get("versions_removed") or ())
    failed = len(pruned.get("failed_runs_removed") or ())
    if not versions and not failed:
        return ""
    return (
        f"; pruned {versions} old version(s) and {failed} old failed run(s) "
        f"({pruned.get('bytes_freed', 0) / 1e6:.1f} MB)"
    )


def _reset_registered_pipelines() -> None:
    """Rebuild the registered pipelines on next access (new parameters)."""
    from kedro.framework import project

    if project.PACKAGE_NAME:
        project.pipelines.configure(f"{project.PACKAGE_NAME}.pipeline_registry")
