"""MLflow tracking: kedro-mlflow, plus one child run per experiment.

kedro-mlflow does the integration: ``conf/<env>/mlflow.yml`` (tracking store,
experiment, UI), one MLflow run per ``kedro run`` with the run's parameters
and Kedro's run parameters as tags, and ``kedro mlflow ui``.
:class:`ExperimentTrackingHook` is its hook with only what it lacks added:

* **one child run per experiment namespace** (``mmoe``, ``ple``…) nested in
  the ``kedro run``'s run. A child opens when its experiment's first node
  starts and closes when its last node ends (in a run of several
  experiments their nodes interleave, so each node's own seconds are logged
  too: ``time.<node>_s``). It carries the experiment's parameters
  (flattened, without the namespace: ``model.name``, so runs line up in
  MLflow's comparison), per-epoch metrics with ``step`` = epoch (``train_loss.*``,
  ``weights.*``, ``valid.*``), final metrics under their own keys
  (``final.valid.*``, ``test.*``), the plots, the parity report and the ONNX
  model as an MLflow model (``mlflow.onnx``: MLmodel, a signature with one
  named output per task, an input example);
* **registered models**: when the whole run succeeded, every experiment's
  model becomes a new version of ``mtl_reco-<experiment>`` in the Model
  Registry, tagged with the Kedro run id, the dataset and the ONNX file's
  SHA-256. After ``compare``, the alias ``champion`` points at the version
  whose bytes are the local model of the experiment ranked first on the
  validation split (and is taken off every other ``mtl_reco-*`` model), so
  ``models:/mtl_reco-ple@champion`` is what ``score`` can load;
* **tags** on the parent and the children: ``kedro.pipeline`` (the pipelines
  asked for), ``kedro.run_id``, ``dataset``, MLflow's source, user and
  ``mlflow.source.git.commit`` (read with ``git`` when MLflow cannot tell);
* **safety for unattended runs**: a tracking store that cannot be reached
  turns tracking off for that session with one error line and never stops a
  run; runs a killed process left ``RUNNING`` over the same data folder on the
  same host are closed ``KILLED`` by the next run (it holds the folder's lock,
  so they have no live owner); SIGTERM/Ctrl-C ends the runs ``KILLED``, a
  failure ``FAILED``; no model is registered by a run that did not succeed.

kedro-mlflow's own plugin hook is disabled in ``settings.py`` so a run is
tracked once. ``MLFLOW_TRACKING_URI`` still points the store at a server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

with warnings.catch_warnings():
    # kedro-mlflow's pyfunc wrapper has no type hints; MLflow warns at import
    warnings.filterwarnings("ignore", message=".*type hints to the `predict`")
    from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook

from mtl_reco.experiment import trained_experiments
from mtl_reco.typed_config import flatten, plain

logger = logging.getLogger(__name__)

# Dataset-name suffixes produced by the experiment template.
HISTORY = "training_history"
TEST_METRICS = "test_metrics"
PLOTS = "plots"
ONNX_MODEL = "onnx_model"
ONNX_PARITY = "onnx_parity"
COMPARISON = "model_comparison"
# Data-side artefacts attached to the runs.
DATA_REPORTS = ("validation_report", "label_report", "split_report", "feature_schema")
DATA_DIR_TAG = "mtl_reco.data_dir"
HOST_TAG = "mtl_reco.host"
SHA_TAG = "mtl_reco.onnx_sha256"
MODEL_PREFIX = "mtl_reco-"
CHAMPION = "champion"
# Parameter blocks every experiment shares, logged on each child run.
SHARED_BLOCKS = ("dataset", "trainer", "split", "encoding", "labels", "evaluation")


def registered_name(experiment: str) -> str:
    """Model Registry name of an experiment's model (``mtl_reco-<experiment>``)."""
    return f"{MODEL_PREFIX}{experiment}"


def _finite_metrics(flat: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in flat.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _absolute_sqlite(conf: dict[str, Any], project_path: Path) -> dict[str, Any]:
    """Anchor a relative ``sqlite:///file.db`` tracking URI at the project root.

    kedro-mlflow anchors relative paths, not relative SQLite URIs; those would
    follow the working directory.
    """
    server = dict(conf.get("server") or {})
    uri = server.get("mlflow_tracking_uri")
    prefix = "sqlite:///"
    if isinstance(uri, str) and uri.startswith(prefix) and uri[len(prefix)] != "/":
        server["mlflow_tracking_uri"] = prefix + str(
            (project_path / uri[len(prefix) :]).resolve()
        )
        return {**conf, "server": server}
    return conf


def _git_commit(project_path: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(project_path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


class ExperimentTrackingHook(MlflowHook):  # type: ignore[misc]  # untyped base
    """kedro-mlflow's hook with per-experiment child runs (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._off = False
        self._lock = threading.Lock()
        self._project_path = Path.cwd()
        self._params: dict[str, Any] = {}
        self._data_dir = ""
        self._reset()

    def _reset(self) -> None:
        self._parent: str | None = None
        self._experiment_id = ""
        self._tags: dict[str, str] = {}
        self._pending: dict[str, int] = {}  # experiment -> nodes still to run
        self._children: dict[str, str] = {}  # experiment -> open child run id
        self._closed: dict[str, str] = {}  # experiment -> finished child run id
        self._models: dict[str, tuple[str, str]] = {}  # experiment -> (uri, sha)
        self._data_reports: dict[str, Any] = {}
        self._ranking: list[str] | None = None
        self._node_started: dict[str, float] = {}

    # -- kedro-mlflow, made safe ------------------------------------------------
    def _disable(self, what: str, exc: BaseException) -> None:
        logger.error("MLflow: tracking is off for this run (%s)", _one_line(exc))
        logger.debug("MLflow: %s failed", what, exc_info=exc)
        self._off = True
        self._is_mlflow_enabled = False

    @property
    def _client(self) -> Any:
        return self.mlflow_config.server._mlflow_client

    @property
    def _tracking(self) -> bool:
        return not self._off and self._is_mlflow_enabled and self.run_id is not None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Set up kedro-mlflow (``mlflow.yml``); a broken store turns tracking off."""
        from mtl_reco.guard import data_folder

        self._off = False
        self._project_path = Path(context.project_path)
        self._params = context.params
        self._data_dir = str(data_folder(context))
        loader = context.config_loader
        try:
            if "mlflow" not in loader.config_patterns:
                loader.config_patterns.update(
                    {"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]}
                )
            try:
                conf = dict(loader["mlflow"])
            except MissingConfigException:
                conf = {}
            loader["mlflow"] = _absolute_sqlite(conf, self._project_path)
            super().after_context_created(context)
        except Exception as exc:
            self._disable("setting up MLflow", exc)

    @hook_impl
    def after_catalog_created(
        self,
        catalog: Any,
        conf_catalog: dict[str, Any],
        conf_creds: dict[str, Any],
        parameters: dict[str, Any],
        save_version: str,
        load_versions: dict[str, str],
    ) -> None:
        """kedro-mlflow's catalog set-up, skipped when tracking is off."""
        if self._off:
            return
        try:
            super().after_catalog_created(
                catalog,
                conf_catalog,
                conf_creds,
                parameters,
                save_version,
                load_versions,
            )
        except Exception as exc:
            self._disable("preparing the catalog", exc)

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        """Open the run of this ``kedro run`` and tag it; note the experiments."""
        self._reset()
        self.run_id = None
        if self._off:
            return
        try:
            super().before_pipeline_run(run_params, pipeline, catalog)
        except Exception as exc:
            self._disable("starting the run", exc)
            return
        if not self._tracking:
            return
        try:
            self._parent = self.run_id
            self._experiment_id = self._client.get_run(self.run_id).info.experiment_id
            try:
                self._close_dead_runs()
            except Exception as exc:
                logger.error(
                    "MLflow: could not look for runs left RUNNING (%s)", _one_line(exc)
                )
            self._tags = self._common_tags(run_params)
            self._client.set_tag(self._parent, "mlflow.runName", self._run_name())
            for key, value in self._tags.items():
                self._client.set_tag(self._parent, key, value)
            if "ParallelRunner" in str(run_params.get("runner") or ""):
                logger.warning(
                    "MLflow: ParallelRunner runs the nodes in other processes; "
                    "only this kedro run's MLflow run is tracked (no run per "
                    "experiment, no registered model)"
                )
                return
            for exp in trained_experiments(pipeline.nodes):
                self._pending[exp] = sum(
                    1 for n in pipeline.nodes if self._experiment_of(n) == exp
                )
        except Exception as exc:
            logger.error("MLflow: could not tag the run (%s)", _one_line(exc))
        logger.info(
            "MLflow: run %s in %s%s",
            self.run_id,
            self.mlflow_config.server.mlflow_tracking_uri,
            f"; one child run per experiment ({', '.join(self._pending)})"
            if self._pending
            else "",
        )

    @hook_impl
    def before_node_run(
        self, node: Node, catalog: Any, inputs: dict[str, Any], is_async: bool
    ) -> None:
        """Log the node's parameters (kedro-mlflow); open its experiment's run."""
        if not self._tracking:
            return
        params = {k: plain(v) for k, v in inputs.items() if k.startswith("params:")}
        try:
            super().before_node_run(node, catalog, params, is_async)
        except Exception as exc:
            logger.warning(
                "MLflow: parameters of %s not logged (%s)", node.name, _one_line(exc)
            )
        exp = self._experiment_of(node)
        self._node_started[node.name] = time.perf_counter()
        with self._lock:  # ThreadRunner: two nodes of one experiment at once
            if (
                exp in self._pending
                and exp not in self._children
                and exp not in self._closed
            ):
                try:
                    self._open_child(exp)
                except Exception as exc:
                    logger.error(
                        "MLflow: no run for experiment %s (%s)", exp, _one_line(exc)
                    )

    @hook_impl
    def after_node_run(self, node: Node, catalog: Any, outputs: dict[str, Any]) -> None:
        """Log what the node produced; close its experiment's run after the last."""
        if not self._tracking:
            return
        for name, data in outputs.items():
            try:
                self._note_output(name, data, catalog)
            except Exception:  # tracking must never break a training run
                logger.exception("MLflow: could not log %s", name)
        exp = self._experiment_of(node)
        with self._lock:
            if exp not in self._children:
                return
            try:
                self._log_node_time(node, self._children[exp])
                self._pending[exp] -= 1
                if self._pending[exp] <= 0:
                    self._close_child(exp, "FINISHED")
            except Exception as exc:  # a store outage must not fail the node
                logger.error(
                    "MLflow: could not update the run of %s (%s)", exp, _one_line(exc)
                )

    @hook_impl
    def after_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        """Register the models, move the champion alias, close the runs."""
        if not self._tracking:
            self._reset()
            return
        try:
            for exp in list(self._children):
                self._close_child(exp, "FINISHED")
            registered = self._register_models()
            if self._ranking is not None:
                self._set_champion(catalog)
            for exp, run_id in self._closed.items():
                logger.info("%s", self._summary(exp, run_id, catalog, registered))
            logger.info(
                "MLflow UI: kedro mlflow ui  (store %s)",
                self.mlflow_config.server.mlflow_tracking_uri,
            )
        except Exception:  # the run has succeeded; tracking must not fail it
            logger.exception("MLflow: could not finish tracking")
        try:
            super().after_pipeline_run(run_params, pipeline, catalog)
            _end_stacked(self._parent, "FINISHED")
        except Exception as exc:
            logger.error("MLflow: could not end the run (%s)", _one_line(exc))
        self._reset()

    @hook_impl(specname="after_pipeline_run", wrapper=True, tryfirst=True)
    def end_runs_if_the_run_fails_late(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> Iterator[None]:
        """End the runs ``FAILED`` when the run fails after its last node.

        The run guard promotes the outputs in ``after_pipeline_run``; when that
        fails (a folder in the way) no other ``after_pipeline_run`` runs and
        Kedro calls no ``on_pipeline_error``. Without this outer wrapper the
        MLflow runs would stay open and MLflow's exit handler would end the
        parent ``FINISHED``: a success for a run that failed.
        """
        try:
            return (yield)
        except BaseException:
            if self._tracking:
                self._abort("FAILED")
            raise

    @hook_impl
    def on_pipeline_error(
        self,
        error: Exception,
        run_params: dict[str, Any],
        pipeline: Pipeline,
        catalog: Any,
    ) -> None:
        """End the runs ``FAILED`` (``KILLED`` when SIGTERM/SIGINT stopped the run)."""
        from mtl_reco.guard import RunInterrupted

        if not self._tracking:
            self._reset()
            return
        status = "KILLED" if isinstance(error, RunInterrupted) else "FAILED"
        self._abort(
            status,
            lambda: super(ExperimentTrackingHook, self).on_pipeline_error(
                error, run_params, pipeline, catalog
            ),
        )

    def _abort(self, status: str, end_parent: Callable[[], None] | None = None) -> None:
        """End the open child runs and the parent with ``status``; never raises."""
        for exp in list(self._children):
            try:
                self._close_child(exp, status)
            except Exception:
                logger.exception("MLflow: could not end the run of %s", exp)
        # experiments whose nodes all ran: none of their outputs became current
        for exp, run_id in self._closed.items():
            try:
                ended = self._client.get_run(run_id).info.end_time
                self._client.set_terminated(run_id, status, end_time=ended)
            except Exception:
                logger.exception("MLflow: could not mark the run of %s", exp)
        try:
            if end_parent is not None:
                end_parent()
            _end_stacked(self._parent, status)
        except Exception:  # never hide the run's own error
            logger.exception("MLflow: could not end the runs %s", status)
        try:
            if self._parent is not None:
                self._client.set_terminated(self._parent, status)
        except Exception:
            logger.exception("MLflow: could not mark the run %s", status)
        self._reset()
        self.run_id = None

    # -- child runs -------------------------------------------------------------
    def _experiment_of(self, node: Node) -> str:
        return (node.namespace or "").split(".")[0]

    def _run_name(self) -> str:
        return str(self.mlflow_config.tracking.run.name or self._tags["kedro.pipeline"])

    def _common_tags(self, run_params: Mapping[str, Any]) -> dict[str, str]:
        from mlflow.tracking.context.registry import resolve_tags

        tags = {k: str(v) for k, v in resolve_tags().items()}
        if "mlflow.source.git.commit" not in tags:
            commit = _git_commit(self._project_path)
            if commit:
                tags["mlflow.source.git.commit"] = commit
        tags.update(
            {
                "kedro.pipeline": ",".join(
                    run_params.get("pipeline_names") or ["__default__"]
                ),
                "kedro.run_id": str(run_params.get("run_id") or ""),
                "kedro.env": str(run_params.get("env") or ""),
                "dataset": str(self._params.get("dataset", "")),
                DATA_DIR_TAG: self._data_dir,
                HOST_TAG: socket.gethostname(),
            }
        )
        return tags

    def _open_child(self, exp: str) -> None:
        flat = flatten(self._params.get(exp) or {}, f"{exp}.")
        tags = {
            **self._tags,
            "mlflow.parentRunId": str(self._parent),
            "mlflow.runName": exp,
            "experiment": exp,
            "model": str(flat.get(f"{exp}.model.name", "")),
            "weighting": str(flat.get(f"{exp}.weighting.name", "")),
        }
        run = self._client.create_run(
            self._experiment_id,
            start_time=int(time.time() * 1000),
            tags=tags,
            run_name=exp,
        )
        self._children[exp] = run.info.run_id
        self._log_params(run.info.run_id, exp)

    def _log_node_time(self, node: Node, run_id: str) -> None:
        """``time.<node>_s``: the node's own seconds.

        In a run of several experiments their nodes interleave (all training
        nodes may come before the evaluations), so a child run's duration is
        not its experiment's cost; the sum of these is.
        """
        started = self._node_started.pop(node.name, None)
        if started is not None:
            seconds = time.perf_counter() - started
            key = f"time.{node.name.rpartition('.')[2]}_s"
            _log_metrics(self._client, run_id, [(key, seconds)], step=0)

    def _close_child(self, exp: str, status: str) -> None:
        run_id = self._children.pop(exp)
        try:
            for name, data in self._data_reports.items():
                self._client.log_dict(run_id, dict(data), f"data/{name}.json")
        finally:
            self._client.set_terminated(
                run_id, status, end_time=int(time.time() * 1000)
            )
        if status == "FINISHED":
            self._closed[exp] = run_id

    def _log_params(self, run_id: str, exp: str) -> None:
        from mlflow.entities import Param

        # without the namespace (model.name, not mmoe.model.name): MLflow's
        # comparison of experiment runs lines their parameters up
        flat: dict[str, Any] = dict(flatten(self._params.get(exp) or {}, ""))
        for key in SHARED_BLOCKS:
            if key in self._params:
                flat.update(flatten(self._params[key], f"{key}."))
        dataset = self._params.get("dataset")
        sources = plain(self._params.get("sources") or {})
        if isinstance(sources, Mapping) and dataset in sources:
            flat.update(flatten(sources[dataset], f"sources.{dataset}."))
        params = [Param(k[:250], str(v)[:6000]) for k, v in sorted(flat.items())]
        for start in range(0, len(params), 100):
            self._client.log_batch(run_id, params=params[start : start + 100])

    def _note_output(self, name: str, data: Any, catalog: Any) -> None:
        if name in DATA_REPORTS and isinstance(data, Mapping):
            self._data_reports[name] = data
            self._client.log_dict(self._parent, dict(data), f"data/{name}.json")
            return
        if name == COMPARISON:
            self._ranking = _ranking(data)
            return
        exp, _, suffix = name.rpartition(".")
        run_id = self._children.get(exp)
        if run_id is None or data is None:
            return
        client = self._client
        if suffix == HISTORY:
            _log_history(client, run_id, data)
        elif suffix == TEST_METRICS:
            from mtl_reco.modeling.metrics import flatten_metrics

            metrics: dict[str, float] = {}
            for split, prefix in (("valid", "final.valid"), ("test", "test")):
                flat = flatten_metrics(data.get(split) or {})
                metrics.update({f"{prefix}.{k}": v for k, v in flat.items()})
            _log_metrics(client, run_id, _finite_metrics(metrics).items(), step=0)
            client.log_dict(run_id, data, "metrics/test_metrics.json")
        elif suffix == PLOTS and isinstance(data, Mapping):
            for plot, fig in data.items():
                client.log_figure(run_id, fig, f"plots/{plot}")
        elif suffix == ONNX_MODEL and isinstance(data, bytes | bytearray):
            self._log_model(exp, run_id, bytes(data), catalog)
        elif suffix == ONNX_PARITY and isinstance(data, Mapping):
            client.log_dict(run_id, dict(data), "export/onnx_parity.json")

    def _log_model(self, exp: str, run_id: str, data: bytes, catalog: Any) -> None:
        import mlflow.onnx
        import onnx

        feeds, outputs = _model_example(data, catalog)
        from mlflow.models import infer_signature

        sha = hashlib.sha256(data).hexdigest()
        info = mlflow.onnx.log_model(
            onnx.load_from_string(data),
            name="model",
            run_id=run_id,
            signature=infer_signature(feeds, outputs),
            input_example=feeds,
            onnx_execution_providers=["CPUExecutionProvider"],
            save_as_external_data=False,
            tags={SHA_TAG: sha},
        )
        self._models[exp] = (info.model_uri, sha)

    # -- registry ---------------------------------------------------------------
    def _register_models(self) -> dict[str, str]:
        """Register every model this (successful) run logged; name -> models: URI."""
        import mlflow

        done: dict[str, str] = {}
        for exp, (uri, sha) in self._models.items():
            if exp not in self._closed:
                continue
            version = mlflow.register_model(
                uri,
                registered_name(exp),
                tags={
                    SHA_TAG: sha,
                    "kedro.run_id": self._tags.get("kedro.run_id", ""),
                    "dataset": self._tags.get("dataset", ""),
                    "experiment": exp,
                },
            )
            done[exp] = f"models:/{registered_name(exp)}/{version.version}"
            logger.info("MLflow: registered %s", done[exp])
        return done

    def _set_champion(self, catalog: Any) -> None:
        """Point ``champion`` at the local model of the best-ranked experiment."""
        if not self._ranking:
            return
        best = self._ranking[0]
        sha = hashlib.sha256(bytes(catalog.load(f"{best}.{ONNX_MODEL}"))).hexdigest()
        client = self._client
        name = registered_name(best)
        versions = [
            v
            for v in client.search_model_versions(f"name = '{name}'")
            if v.tags.get(SHA_TAG) == sha
        ]
        if not versions:
            logger.warning(
                "MLflow: %s is ranked first but its local model was never "
                "registered (trained with tracking off?); alias %r not moved",
                best,
                CHAMPION,
            )
            return
        version = max(versions, key=lambda v: int(v.version))
        for model in client.search_registered_models(f"name LIKE '{MODEL_PREFIX}%'"):
            if model.name != name and CHAMPION in (model.aliases or {}):
                client.delete_registered_model_alias(model.name, CHAMPION)
        client.set_registered_model_alias(name, CHAMPION, version.version)
        logger.info(
            "MLflow: models:/%s@%s -> version %s (ranked first on validation)",
            name,
            CHAMPION,
            version.version,
        )

    # -- housekeeping -----------------------------------------------------------
    def _close_dead_runs(self) -> None:
        """Close as ``KILLED`` the runs a dead process left ``RUNNING`` here.

        Runs at the start of every run, after the run guard took the data
        folder's lock: a run still ``RUNNING`` for this folder on this host
        has no live owner. The run just opened is not tagged yet.
        """
        # folder and host compared here, not in the filter: a path may hold quotes
        query = "attributes.status = 'RUNNING'"
        for run in self._client.search_runs([self._experiment_id], filter_string=query):
            tags = run.data.tags
            if (
                run.info.run_id == self._parent
                or tags.get(DATA_DIR_TAG) != self._data_dir
                or tags.get(HOST_TAG) != socket.gethostname()
            ):
                continue
            self._client.set_terminated(run.info.run_id, "KILLED")
            logger.warning(
                "MLflow: run %s (%s) was left RUNNING by a process that is gone; "
                "marked KILLED",
                run.info.run_id,
                run.info.run_name,
            )

    def _summary(
        self, exp: str, run_id: str, catalog: Any, registered: Mapping[str, str]
    ) -> str:
        lines = [f"experiment '{exp}' finished; MLflow run {run_id}"]
        paths: dict[str, Path] = {}
        for suffix, label in (
            (TEST_METRICS, "test metrics"),
            (PLOTS, "plots"),
            (ONNX_MODEL, "ONNX model"),
        ):
            try:
                dataset = catalog.get(f"{exp}.{suffix}")
                paths[suffix] = Path(dataset._get_load_path().as_posix())
            except Exception:
                continue
            lines.append(f"  {label}: {paths[suffix]}")
        if exp in registered:
            lines.append(f"  registered model: {registered[exp]}")
        metrics_path = paths.get(TEST_METRICS)
        if metrics_path is not None and metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
            tasks = metrics.get("test", {}).get("tasks", {})
            aucs = {t: round(v["auc"], 4) for t, v in tasks.items() if "auc" in v}
            if aucs:
                lines.append(f"  test AUC: {aucs}")
        return "\n".join(lines)


def _end_stacked(run_id: str | None, status: str) -> None:
    """End every entry of ``run_id`` left on MLflow's active-run stack.

    kedro-mlflow 2.0.3 restarts its run before every node (for threads);
    MLflow 3 stacks such a restart instead of refusing it, so kedro-mlflow's
    single ``end_run`` leaves the run active: a later session in the same
    process would log into it, and MLflow's exit handler would end it
    ``FINISHED`` whatever happened.
    """
    import mlflow

    while (active := mlflow.active_run()) is not None and active.info.run_id == run_id:
        mlflow.end_run(status)


def _ranking(table: Any) -> list[str]:
    """Experiments of the comparison table, best first (its ``rank`` column)."""
    if table is None or len(table) == 0 or "rank" not in table:
        return []
    ranked = table.dropna(subset=["rank"]).sort_values("rank")
    return [str(e) for e in ranked["experiment"]]


def _model_example(data: bytes, catalog: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A few encoded test rows as the model's named inputs, and its outputs."""
    import numpy as np

    from mtl_reco.serving import OnnxPredictor

    predictor = OnnxPredictor(data)
    inputs = predictor.description["inputs"]
    frame = None
    try:
        table = catalog.load("encoded_test")
        frame = next(iter(table.iter_chunks(chunk_rows=5))).head(5)
    except Exception:
        logger.debug("MLflow: input example from zeros", exc_info=True)
    feeds: dict[str, Any] = {}
    for spec in inputs:
        dtype = np.int64 if spec["kind"] == "sparse" else np.float32
        if frame is not None and spec["feature"] in frame:
            feeds[spec["name"]] = frame[spec["feature"]].to_numpy(dtype=dtype)
        else:
            feeds[spec["name"]] = np.zeros(2, dtype=dtype)
    names = [o.name for o in predictor.session.get_outputs()]
    values = predictor.session.run(names, feeds)
    return feeds, dict(zip(names, values, strict=True))


def _log_history(client: Any, run_id: str, history: Any) -> None:
    epochs = history.get("epochs", []) if isinstance(history, Mapping) else []
    for record in epochs:
        step = int(record.get("epoch", 0))
        flat = flatten({k: v for k, v in record.items() if k != "epoch"})
        _log_metrics(client, run_id, _finite_metrics(flat).items(), step=step)


def _log_metrics(
    client: Any, run_id: str, items: Iterable[tuple[str, float]], step: int
) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k[:250], v, now, step) for k, v in items]
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start : start + 500])
