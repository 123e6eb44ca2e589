"""Nodes of the experiment template: train, evaluate, export.

Each is a short function over catalog artefacts and typed parameters that
calls into :mod:`mtl_reco.modeling`. The same functions serve every
experiment; the namespace decides which parameter block and which
``<experiment>.*`` artefacts they see.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from mtl_reco.experiment.checkpoints import CheckpointFolder, code_digest, resume_key
from mtl_reco.experiment.config import EvaluationConfig, ExportConfig
from mtl_reco.experiment.distributed import DistributedJob, launch
from mtl_reco.experiment.loading import (
    load_split,
    load_tensor_table,
    resolve_data_mode,
)
from mtl_reco.experiment.streaming import StreamingTable
from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.device import resolve_device
from mtl_reco.modeling.evaluation import evaluate_outputs, predict_raw
from mtl_reco.modeling.export import check_parity, export_onnx
from mtl_reco.modeling.models.base import MultiTaskModel, to_predictions
from mtl_reco.modeling.models.registry import ModelSpec, build_model, model_from_spec
from mtl_reco.modeling.trainer import TrainResult, train
from mtl_reco.modeling.weighting.registry import WeightingSpec, build_strategy
from mtl_reco.reporting import plots
from mtl_reco.schema import FeatureSchema
from mtl_reco.serving import OnnxPredictor
from mtl_reco.tables import Table, as_table, count_rows

logger = logging.getLogger(__name__)


class ParityError(RuntimeError):
    """The exported ONNX model does not score like the PyTorch model."""


def rebuild_model(
    model_state: dict[str, torch.Tensor], model_spec: dict[str, Any]
) -> MultiTaskModel:
    """Rebuild a trained model from its state_dict and JSON spec."""
    model = model_from_spec(model_spec)
    model.load_state_dict(model_state)
    return model.eval()


def train_model(
    encoded_train: Table,
    encoded_valid: Table,
    feature_schema: dict[str, Any],
    model: ModelSpec,
    weighting: WeightingSpec,
    trainer: TrainerConfig,
    *,
    experiment: str | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Build the experiment's model and loss weighting and train it.

    Early stopping watches the validation split (never the test split). With
    ``trainer.checkpoint_dir`` set, a checkpoint per epoch lets an interrupted
    run resume (:mod:`mtl_reco.experiment.checkpoints`): from the folder
    ``<checkpoint_dir>/<experiment>``, and only when the trainer, model and
    weighting settings, the feature schema and the content of the encoded
    train/valid splits are exactly those the checkpoint was made with
    (otherwise the differing keys are logged and training starts fresh). The
    folder stays after training, so a run that fails later resumes from the
    final checkpoint; the run guard deletes it once the run has succeeded.

    ``trainer.data`` decides whether the splits are loaded into memory or
    streamed from their parquet files (:mod:`mtl_reco.experiment.loading`);
    ``trainer.distributed`` trains on several ranks
    (:mod:`mtl_reco.experiment.distributed`), this process saving the result.

    Args:
        encoded_train: Encoded train split.
        encoded_valid: Encoded validation split.
        feature_schema: The ``feature_schema`` artefact.
        model: Architecture and hyperparameters.
        weighting: Loss-weighting strategy.
        trainer: Training settings.
        experiment: The experiment's name (names its checkpoint folder;
            bound by the experiment pipeline).

    Returns:
        ``model_state`` (state_dict), ``model_spec`` (JSON that rebuilds the
        model, with the weighting and the training outcome) and
        ``training_history`` (per-epoch losses, weights and validation metrics).
    """
    schema = FeatureSchema.from_dict(feature_schema)
    torch.manual_seed(trainer.seed)  # the model's initialisation
    net = build_model(model.name, schema, model.tasks, model.build_config())
    strategy = build_strategy(weighting.name, net.task_names, weighting.build_config())
    tasks = list(net.task_names)
    mode = resolve_data_mode(trainer.data, [encoded_train, encoded_valid], schema)
    distributed = trainer.distributed.enabled
    logger.info(
        "training %s with %s weighting on %d rows (valid %d), tasks %s, data %s%s",
        model.name,
        weighting.name,
        count_rows(as_table(encoded_train)),
        count_rows(as_table(encoded_valid)),
        tasks,
        mode,
        f", {trainer.distributed.nproc_per_node} rank(s) per node"
        if distributed
        else "",
    )
    config = trainer
    folder = None
    if trainer.checkpoint_dir:
        settings = resume_key(
            trainer.to_dict(),
            model=model.to_dict(),
            weighting=weighting.to_dict(),
            feature_schema=schema.to_dict(),
            data={
                "train": StreamingTable(encoded_train, schema, tasks).fingerprint(),
                "valid": StreamingTable(encoded_valid, schema, tasks).fingerprint(),
            },
            device=str(resolve_device(trainer.device)),
            torch=torch.__version__,
            code=code_digest(),
        )
        folder = CheckpointFolder(
            Path(trainer.checkpoint_dir),
            experiment or f"{model.name}-{weighting.name}",
            settings,
            trainer.resume,
        )
        where, resumable = folder.open()
        config = TrainerConfig.from_dict(
            {**trainer.to_dict(), "checkpoint_dir": str(where), "resume": resumable}
        )
    ranks = None
    try:
        if distributed:
            job = DistributedJob(
                encoded_train,
                encoded_valid,
                feature_schema,
                model,
                weighting,
                config,
                mode,
            )
            outcome = launch(job)
            net.load_state_dict(outcome["state"])
            result = TrainResult(**outcome["result"])
            ranks = {
                "world_size": outcome["world_size"],
                "peak_rss_mb_per_local_rank": outcome["peak_rss_mb"],
            }
        else:
            train_table = load_split(encoded_train, schema, tasks, config, mode)
            valid_table = load_split(encoded_valid, schema, tasks, config, mode)
            result = train(net, train_table, valid_table, strategy, config)
    finally:
        if folder is not None:
            folder.close()
    spec = {
        **net.spec(),
        "experiment": experiment,
        "encoder": feature_schema.get("encoder"),
        "weighting": weighting.to_dict(),
        "best_epoch": result.best_epoch,
        "monitor": result.monitor,
        "best_score": result.best_score,
    }
    history = {
        "model": model.name,
        "weighting": weighting.name,
        "tasks": list(net.task_names),
        "best_epoch": result.best_epoch,
        "monitor": result.monitor,
        "best_score": result.best_score,
        "stopped_early": result.stopped_early,
        "epochs_run": result.epochs_run,
        "resumed_from": result.resumed_from,
        "data": mode,
        "distributed": ranks,
        "epochs": result.history,
    }
    return net.state_dict(), spec, history


def evaluate_experiment(
    model_state: dict[str, torch.Tensor],
    model_spec: dict[str, Any],
    encoded_valid: Table,
    encoded_test: Table,
    training_history: dict[str, Any],
    trainer: TrainerConfig,
    evaluation: EvaluationConfig,
    dataset: str | None = None,
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Figure]]:
    """Score valid and test, compute every metric, draw the plots.

    ``dataset`` (the ``dataset`` parameter) is recorded in the metrics, so
    the comparison never puts experiments trained on other data side by side.

    Returns:
        ``test_metrics`` (per-task AUC/LogLoss on valid and test, funnel
        metrics, oracle gaps on simulated data), ``test_predictions`` (one row
        per test row: labels and every output's probability) and ``plots``
        (learning curves, task weights, test ROC curves).
    """
    model = rebuild_model(model_state, model_spec)
    schema = model.schema
    group = (evaluation.group_column,) if evaluation.group_column else ()
    tasks = list(model.task_names)
    results: dict[str, Any] = {}
    mode = resolve_data_mode(trainer.data, [encoded_valid, encoded_test], schema)
    for split, encoded in (("valid", encoded_valid), ("test", encoded_test)):
        table = load_split(encoded, schema, tasks, trainer, mode, extra_columns=group)
        # one pass over the split: its scores serve the metrics and, for the
        # test split, the predictions and the ROC chart
        raw = predict_raw(model, table, evaluation.batch_size, trainer.device)
        labels = table.labels_dict()
        results[split] = evaluate_outputs(
            model,
            raw,
            labels,
            table.extras,
            group_column=evaluation.group_column,
            oracle=evaluation.oracle,
        )
    for note in results["test"].get("notes", []):
        logger.warning("test metrics: %s", note)
    metrics = {
        "dataset": dataset,
        "encoder": model_spec.get("encoder"),
        "model": model_spec["model"],
        "weighting": model_spec.get("weighting", {}).get("name"),
        "best_epoch": model_spec.get("best_epoch"),
        "monitor": model_spec.get("monitor"),
        "valid": results["valid"],
        "test": results["test"],
    }
    probs = {
        name: value.numpy()
        for name, value in to_predictions(raw, model.task_types).items()
    }
    predictions = pd.DataFrame({f"label_{t}": labels[t] for t in tasks})
    for name, values in probs.items():
        predictions[f"p_{name}"] = values
    if not evaluation.save_predictions:
        predictions = predictions.head(0)
    title = f"{model_spec['model']} / {metrics['weighting']}"
    aucs = {t: results["test"]["tasks"][t].get("auc", np.nan) for t in tasks}
    figures = {
        "learning_curves.png": plots.learning_curves(training_history, tasks, title),
        "task_weights.png": plots.task_weights(training_history, tasks, title),
        "roc_test.png": plots.roc_curves(
            {t: labels[t] for t in tasks}, {t: probs[t] for t in tasks}, aucs, title
        ),
    }
    return metrics, predictions, figures


def export_model(
    model_state: dict[str, torch.Tensor],
    model_spec: dict[str, Any],
    encoded_test: Table,
    export: ExportConfig,
) -> tuple[bytes, dict[str, Any]]:
    """Export to ONNX and check it scores like PyTorch on the test split.

    Raises:
        ParityError: The largest absolute difference exceeds
            ``export.tolerance`` (the run fails; nothing is saved).

    Returns:
        The ``.onnx`` bytes and a parity report (max abs diff overall and per
        batch size, rows compared, exporter, opset, input name map).
    """
    model = rebuild_model(model_state, model_spec)
    rows = None
    if export.parity_rows is not None:
        rows = (0, min(count_rows(as_table(encoded_test)), export.parity_rows))
    table = load_tensor_table(encoded_test, model.schema, tasks=[], rows=rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        description = export_onnx(
            model,
            path,
            opset=export.opset,
            provenance={
                "experiment": model_spec.get("experiment"),
                "encoder": model_spec.get("encoder"),
            },
        )
        overall = check_parity(model, path, table, max_rows=None)
        per_batch = {
            str(size): check_parity(model, path, table, max_rows=None, batch_size=size)
            for size in export.batch_sizes
            if size <= max(len(table), 1)
        }
        onnx_bytes = path.read_bytes()
    values = [overall, *per_batch.values()]
    # check_parity gives inf for non-finite scores; never let NaN compare as "small"
    worst = math.inf if any(math.isnan(v) for v in values) else max(values)
    report = {
        "max_abs_diff": worst,
        "max_abs_diff_by_batch_size": per_batch,
        "tolerance": export.tolerance,
        "rows_compared": len(table),
        "passed": worst <= export.tolerance,
        "exporter": description.get("exporter"),
        "opset": description.get("opset"),
        "inputs": description.get("name_map"),
        "outputs": [o["output"] for o in description.get("outputs", [])],
    }
    if not worst <= export.tolerance:
        raise ParityError(
            f"ONNX export of {model_spec['model']} differs from PyTorch by {worst:.3g} "
            f"(> tolerance {export.tolerance:g}) on {len(table)} test rows"
        )
    logger.info(
        "ONNX parity for %s: max abs diff %.2e over %d rows",
        model_spec["model"],
        worst,
        len(table),
    )
    return onnx_bytes, report


def onnx_predictor(onnx_model: bytes) -> OnnxPredictor:
    """An onnxruntime predictor over model bytes (as the catalog loads them)."""
    return OnnxPredictor(onnx_model)
