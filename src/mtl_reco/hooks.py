"""Project hooks: MLflow tracking of every experiment a run trains.

:class:`MlflowTrackingHook` opens one MLflow run per experiment namespace found
in the pipeline being run (``kedro run --pipeline=train_mmoe`` -> one run named
``mmoe``; the default pipeline -> one run per experiment), tagged with the
experiment, model, loss weighting, dataset, Kedro pipeline and session. It logs

* every resolved parameter that shapes the experiment (flattened keys);
* per-epoch training losses, task weights and validation metrics (``step`` =
  epoch) from ``<experiment>.training_history``;
* test metrics from ``<experiment>.test_metrics``;
* the ONNX model, its parity report, the plots and the data-validation report
  as artefacts.

A run whose process was killed (SIGKILL, power loss) cannot close its MLflow
runs; the next run over the same data folder on the same host closes them as
``KILLED`` (it holds the folder's lock, so no live run owns them). A run
interrupted by SIGTERM/Ctrl-C ends its MLflow runs ``KILLED``, a failing one
``FAILED``.

The store is set by ``tracking.tracking_uri`` (default
``sqlite:///mlflow.db`` inside the project; ``MLFLOW_TRACKING_URI`` overrides
it for a shared server). ``tracking.enabled: false`` turns the hook off. MLflow
is imported lazily so Kedro commands that do not run pipelines stay fast.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from mtl_reco.experiment import trained_experiments
from mtl_reco.typed_config import flatten, plain

logger = logging.getLogger(__name__)

# Dataset-name suffixes produced by the experiment template.
HISTORY = "training_history"
TEST_METRICS = "test_metrics"
PLOTS = "plots"
ONNX_MODEL = "onnx_model"
ONNX_PARITY = "onnx_parity"
# Data-side artefacts attached to every experiment run.
DATA_REPORTS = ("validation_report", "label_report", "split_report", "feature_schema")
DATA_DIR_TAG = "mtl_reco.data_dir"
HOST_TAG = "mtl_reco.host"


def _finite_metrics(flat: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in flat.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


class MlflowTrackingHook:
    """One MLflow run per experiment (see the module docstring)."""

    def __init__(self) -> None:
        self._settings: dict[str, Any] = {}
        self._params: dict[str, Any] = {}
        self._project_path: Path = Path.cwd()
        self._client: Any = None
        self._runs: dict[str, str] = {}  # experiment namespace -> run id
        self._data_artefacts: dict[str, Any] = {}
        self._data_dir = ""

    # -- lifecycle --------------------------------------------------------------
    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Read the tracking settings and the resolved parameters."""
        self._project_path = Path(context.project_path)
        from mtl_reco.guard import data_folder

        params = context.params
        self._settings = dict(params.get("tracking") or {})
        self._params = params
        self._data_dir = str(data_folder(context))

    @property
    def enabled(self) -> bool:
        """Whether tracking is switched on."""
        return bool(self._settings.get("enabled", True))

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        """Open one run per experiment namespace that has a training node.

        A tracking store that cannot be reached or written turns tracking off
        for this run with one error line; it never stops the run.
        """
        if not self.enabled:
            return
        try:
            self._open_runs(run_params, pipeline)
        except Exception as exc:
            logger.error(
                "MLflow: tracking is off for this run (%s: %s)",
                type(exc).__name__,
                " ".join(str(exc).split())[:300],
            )
            self._runs = {}

    def _open_runs(self, run_params: dict[str, Any], pipeline: Pipeline) -> None:
        experiments = trained_experiments(pipeline.nodes)
        if not experiments:
            if self._store_exists():
                client = self._mlflow_client()
                found = client.get_experiment_by_name(self._experiment_name())
                if found is not None:
                    self._close_dead_runs(client, str(found.experiment_id))
            return
        client = self._mlflow_client()
        experiment_id = self._experiment_id(client)
        self._close_dead_runs(client, experiment_id)
        pipeline_name = ",".join(run_params.get("pipeline_names") or ["__default__"])
        for exp in experiments:
            block = self._params.get(exp) or {}
            flat = flatten(block, f"{exp}.")
            model_name = flat.get(f"{exp}.model.name", "")
            weighting = flat.get(f"{exp}.weighting.name", "")
            tags = {
                "experiment": exp,
                "model": str(model_name),
                "weighting": str(weighting),
                "dataset": str(self._params.get("dataset", "")),
                "kedro.pipeline": str(pipeline_name),
                "kedro.session_id": str(run_params.get("run_id", "")),
                "kedro.env": str(run_params.get("env") or ""),
                DATA_DIR_TAG: self._data_dir,
                HOST_TAG: socket.gethostname(),
                "mlflow.runName": exp,
            }
            run = client.create_run(experiment_id, tags=tags, run_name=exp)
            self._runs[exp] = run.info.run_id
            self._log_params(client, run.info.run_id, exp)
        logger.info(
            "MLflow: tracking %d run(s) in %s (%s)",
            len(self._runs),
            self._tracking_uri(),
            ", ".join(self._runs),
        )

    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        """Log what a node of an experiment produced to that experiment's run."""
        if not self._runs:
            return
        for name, data in outputs.items():
            if name in DATA_REPORTS:
                self._data_artefacts[name] = data
                continue
            exp, _, suffix = name.rpartition(".")
            run_id = self._runs.get(exp)
            if run_id is None or data is None:
                continue
            try:
                self._log_output(run_id, suffix, data)
            except Exception:  # tracking must never break a training run
                logger.exception("MLflow: could not log %s", name)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> None:
        """Attach the data reports, close the runs and say where things are."""
        if not self._runs:
            return
        try:
            self._close_runs(catalog)
        except Exception:  # the run has succeeded; tracking must not fail it
            logger.exception("MLflow: could not close the runs")
        self._runs = {}

    def _close_runs(self, catalog: Any) -> None:
        client = self._mlflow_client()
        for exp, run_id in self._runs.items():
            for name, data in self._data_artefacts.items():
                if isinstance(data, Mapping):
                    client.log_dict(run_id, dict(data), f"data/{name}.json")
            client.set_terminated(run_id, "FINISHED")
            logger.info("%s", self._summary(exp, run_id, catalog))
        logger.info(
            "MLflow UI: mlflow ui --backend-store-uri %s  (or `make mlflow-ui`)",
            self._tracking_uri(),
        )
        self._runs = {}

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        """Mark open runs ``FAILED`` (``KILLED`` when SIGTERM/SIGINT stopped them)."""
        from mtl_reco.guard import RunInterrupted

        if not self._runs:
            return
        status = "KILLED" if isinstance(error, RunInterrupted) else "FAILED"
        try:
            client = self._mlflow_client()
            for run_id in self._runs.values():
                client.set_terminated(run_id, status)
        except Exception:  # never hide the run's own error
            logger.exception("MLflow: could not mark the runs %s", status)
        self._runs = {}

    def _close_dead_runs(self, client: Any, experiment_id: str) -> None:
        """Close as ``KILLED`` the runs a dead process left ``RUNNING`` here.

        Called at the start of every run (also those that train nothing),
        after the run guard took the data folder's lock: a run still
        ``RUNNING`` for this folder on this host has no live owner.
        """
        query = (
            "attributes.status = 'RUNNING' "
            f"and tags.`{DATA_DIR_TAG}` = '{self._data_dir}' "
            f"and tags.`{HOST_TAG}` = '{socket.gethostname()}'"
        )
        try:
            dead = client.search_runs([experiment_id], filter_string=query)
        except Exception:  # a tracking problem must not stop the run
            logger.exception("MLflow: could not look for runs left RUNNING")
            return
        for run in dead:
            client.set_terminated(run.info.run_id, "KILLED")
            logger.warning(
                "MLflow: run %s (%s) was left RUNNING by a process that is gone; "
                "marked KILLED",
                run.info.run_id,
                run.info.run_name,
            )

    # -- helpers ----------------------------------------------------------------
    def _tracking_uri(self) -> str:
        uri = str(self._settings.get("tracking_uri") or "sqlite:///mlflow.db")
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
            uri = prefix + str((self._project_path / uri[len(prefix) :]).resolve())
        return uri

    def _mlflow_client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self._tracking_uri())
        return self._client

    def _experiment_name(self) -> str:
        return str(self._settings.get("experiment_name") or "mtl_reco")

    def _store_exists(self) -> bool:
        """A local SQLite store exists (any other store is assumed to)."""
        uri = self._tracking_uri()
        prefix = "sqlite:///"
        return not uri.startswith(prefix) or Path(uri[len(prefix) :]).is_file()

    def _experiment_id(self, client: Any) -> str:
        name = self._experiment_name()
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            return str(found.experiment_id)
        artifact_location = None
        if self._tracking_uri().startswith("sqlite:"):
            artifact_location = (self._project_path / "mlruns").resolve().as_uri()
        return str(client.create_experiment(name, artifact_location=artifact_location))

    def _log_params(self, client: Any, run_id: str, exp: str) -> None:
        from mlflow.entities import Param

        flat: dict[str, Any] = {}
        flat.update(flatten(self._params.get(exp) or {}, f"{exp}."))
        for key in ("dataset", "trainer", "split", "encoding", "labels", "evaluation"):
            if key in self._params:
                flat.update(flatten(self._params[key], f"{key}."))
        dataset = self._params.get("dataset")
        sources = plain(self._params.get("sources") or {})
        if isinstance(sources, Mapping) and dataset in sources:
            flat.update(flatten(sources[dataset], f"sources.{dataset}."))
        params = [Param(k[:250], str(v)[:6000]) for k, v in sorted(flat.items())]
        for start in range(0, len(params), 100):
            client.log_batch(run_id, params=params[start : start + 100])

    def _log_output(self, run_id: str, suffix: str, data: Any) -> None:
        client = self._mlflow_client()
        if suffix == HISTORY:
            self._log_history(client, run_id, data)
        elif suffix == TEST_METRICS:
            from mtl_reco.modeling.metrics import flatten_metrics

            metrics: dict[str, float] = {}
            for split in ("valid", "test"):
                flat = flatten_metrics(data.get(split) or {})
                metrics.update({f"{split}.{k}": v for k, v in flat.items()})
            _log_metrics(client, run_id, _finite_metrics(metrics).items(), step=0)
            client.log_dict(run_id, data, "metrics/test_metrics.json")
        elif suffix == PLOTS and isinstance(data, Mapping):
            for name, fig in data.items():
                client.log_figure(run_id, fig, f"plots/{name}")
        elif suffix == ONNX_MODEL and isinstance(data, bytes | bytearray):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.onnx"
                path.write_bytes(bytes(data))
                client.log_artifact(run_id, str(path), "model")
        elif suffix == ONNX_PARITY and isinstance(data, Mapping):
            client.log_dict(run_id, dict(data), "model/onnx_parity.json")

    @staticmethod
    def _log_history(client: Any, run_id: str, history: Any) -> None:
        epochs = history.get("epochs", []) if isinstance(history, Mapping) else []
        for record in epochs:
            step = int(record.get("epoch", 0))
            flat = flatten({k: v for k, v in record.items() if k != "epoch"})
            _log_metrics(client, run_id, _finite_metrics(flat).items(), step=step)

    def _summary(self, exp: str, run_id: str, catalog: Any) -> str:
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
        metrics_path = paths.get(TEST_METRICS)
        if metrics_path is not None and metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
            tasks = metrics.get("test", {}).get("tasks", {})
            aucs = {t: round(v["auc"], 4) for t, v in tasks.items() if "auc" in v}
            if aucs:
                lines.append(f"  test AUC: {aucs}")
        return "\n".join(lines)


def _log_metrics(
    client: Any, run_id: str, items: Iterable[tuple[str, float]], step: int
) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k[:250], v, now, step) for k, v in items]
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start : start + 500])
