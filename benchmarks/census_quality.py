"""Census-Income quality: mtl_reco vs Torch-RecHub 0.9.0 vs the published figures.

The MMoE paper's first Census-Income task group (Ma et al., KDD 2018): task
``income`` (income > 50K, 6.2 % positive) and task ``marital`` (never
married, 43.4 % positive) on the UCI Census-Income (KDD) file of 199,523
rows. SharedBottom, MMoE, PLE and AITM (ESMM does not apply: the tasks are
no click -> purchase funnel) are trained with several seeds by mtl_reco and
by Torch-RecHub 0.9.0 on the SAME split and encoding under the same budget,
and their test AUCs are printed beside the papers' figures.

Data (mtl_reco's own library, as the ``data_processing`` pipeline chains it):
``read_source("census_income")`` -> ``plan_labels``/``label_table`` ->
``plan_split``/``split_table`` (seeded random 80/10/10 split of the file) ->
``FeatureEncoder.fit`` on train only (vocabulary ``min_count`` 2, rare and
unseen values share id 0; dense columns standard-scaled) -> ``transform`` ->
``load_tensor_table``. Torch-RecHub gets the very same encoded arrays as
``{feature: column}`` dicts through its own ``DataGenerator``/``DataLoader``
(``benchmarks/_rechub.py``).

Budget, identical for both libraries (see :data:`BUDGET`, :data:`MODEL_PARAMS`):
embedding 4 per sparse field, batch 1024, Adam lr 1e-3 with weight decay
1e-4 (L2, ``torch.optim.Adam`` in both), at most 20 epochs with early
stopping on the VALIDATION split (patience 3; the test split is only scored
once, after training), objective = mean of the two task BCE losses. Sizes are
Torch-RecHub's Census example (``examples/ranking/run_census.py``), itself
the MMoE paper's setup: MMoE 8 experts [16] + towers [8]; SharedBottom
bottom [117] (about MMoE's parameter count) + towers [8]; PLE 2 levels of
3 task-specific experts per task + 2 shared [16], towers [8]; AITM task
towers [32, 16] + heads [8].

Differences that remain (recorded under ``config.differences``):
Torch-RecHub puts BatchNorm after every hidden Linear (experts, towers and
the softmax gates), outputs probabilities trained with ``BCELoss`` (mtl_reco:
logits with ``BCEWithLogitsLoss``), early-stops on task 0 (income) only
(mtl_reco: ``--monitor``, default the mean validation AUC of both tasks), and
restores its best weights only when it stops early (after its last epoch it
keeps the last weights); AITM's calibrator is off in mtl_reco (it assumes a
funnel, p(task t) <= p(task t-1), which Census does not have; Torch-RecHub's
AITM has none). Both libraries are scored with mtl_reco's AUC/LogLoss
functions on the same test rows.

The papers tested on the official UCI test file (99,762 rows, not available
here); ours is a split of the training file, so the comparison with their
figures is indicative only.

    python benchmarks/census_quality.py                       # full (see README)
    python benchmarks/census_quality.py --quick               # CI smoke, seconds
    python benchmarks/census_quality.py --seeds 5 --models mmoe,ple
    python benchmarks/census_quality.py --libraries mtl_reco --epochs 10

Output: ``benchmarks/results/census_quality.json`` (``--quick``:
``census_quality_quick.json``); layout in :data:`LAYOUT` and the README.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import _common
import _rechub
from mtl_reco.experiment.loading import load_tensor_table
from mtl_reco.modeling.config import (
    EarlyStoppingConfig,
    OptimizerConfig,
    TrainerConfig,
)
from mtl_reco.modeling.data import TensorTable
from mtl_reco.modeling.metrics import auc_score, log_loss
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.modeling.trainer import evaluate_model, train
from mtl_reco.modeling.weighting.registry import build_strategy
from mtl_reco.processing.config import EncodingConfig, LabelsConfig, SplitConfig
from mtl_reco.processing.encoder import FeatureEncoder
from mtl_reco.processing.labels import label_table, plan_labels
from mtl_reco.processing.split import plan_split, split_table
from mtl_reco.schema import FeatureSchema
from mtl_reco.sources.registry import read_source
from mtl_reco.tables import FrameTable

NAME = "census_quality"
LAYOUT_VERSION = 1
TASKS = ("income", "marital")
TASK_DESCRIPTIONS = {
    "income": "income > 50K (raw column income == '50000+.')",
    "marital": "never married (raw column marital stat == 'Never married')",
}
MODELS = ("shared_bottom", "mmoe", "ple", "aitm")
LIBRARIES = ("mtl_reco", "torch_rechub")
CENSUS_FILE = "census-income-kdd/uci-raw/census_income_1994_1995_train.csv.gz"
SPLIT_SEED = 17
SPLIT_RATIOS = {"train": 0.8, "valid": 0.1, "test": 0.1}
QUICK_ROWS = 4000

log = logging.getLogger(NAME)


@dataclass(frozen=True)
class Budget:
    """Training budget shared by both libraries (and every model).

    Attributes:
        max_epochs: Maximum epochs.
        patience: Early-stopping patience in epochs (validation split only).
        batch_size: Training batch size.
        embedding_dim: Embedding size of every sparse field.
        lr: Adam learning rate.
        weight_decay: Adam (L2) weight decay.
        monitor: mtl_reco's early-stopping metric on the validation split
            (Torch-RecHub always monitors task 0, income AUC).
        eval_batch_size: Rows per forward pass when scoring.
    """

    max_epochs: int = 20
    patience: int = 3
    batch_size: int = 1024
    embedding_dim: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    monitor: str = "mean.auc"
    eval_batch_size: int = 16384


BUDGET = Budget()

#: Architecture hyperparameters in mtl_reco's vocabulary; ``_rechub`` maps them
#: onto Torch-RecHub's constructors (AITM: its "bottoms" are our towers, its
#: "towers" our heads).
MODEL_PARAMS: dict[str, dict[str, Any]] = {
    "shared_bottom": {"bottom_dims": [117], "tower_dims": [8]},
    "mmoe": {"n_experts": 8, "expert_dims": [16], "tower_dims": [8]},
    "ple": {
        "n_levels": 2,
        "n_specific_experts": 3,
        "n_shared_experts": 2,
        "expert_dims": [16],
        "tower_dims": [8],
    },
    "aitm": {"tower_dims": [32, 16], "head_dims": [8]},
}
#: mtl_reco-only settings (no Torch-RecHub counterpart).
OURS_EXTRA: dict[str, dict[str, Any]] = {"aitm": {"calibrator_alpha": 0.0}}

DIFFERENCES = [
    "Torch-RecHub's MLP puts BatchNorm1d after every hidden Linear (experts, "
    "towers, and its softmax gates); mtl_reco's models have no BatchNorm.",
    "Torch-RecHub's heads output probabilities trained with BCELoss; mtl_reco's "
    "output logits trained with BCEWithLogitsLoss (same objective, stabler).",
    "Objective: mean of the two task losses in both (mtl_reco: fixed weights "
    "0.5/0.5; Torch-RecHub's MTLTrainer without adaptive_params).",
    "Early stopping, validation split only, same patience: Torch-RecHub "
    "monitors task 0 (income AUC, earlystop_taskid=0, its only option); "
    "mtl_reco monitors config.budget.monitor.",
    "Torch-RecHub's fit restores its best weights only when it stops early; "
    "when it runs all epochs it keeps the last epoch's weights (scored_epoch "
    "says which epoch was scored). mtl_reco always restores the best epoch.",
    "AITM: mtl_reco's behavioural expectation calibrator is off "
    "(calibrator_alpha 0): it assumes a funnel p(task t) <= p(task t-1), which "
    "Census does not have; Torch-RecHub's AITM has no calibrator.",
    "Loaders: mtl_reco slices shuffled batches from contiguous tensors; "
    "Torch-RecHub uses its DataGenerator/DataLoader (shuffle=True, per-row "
    "Dataset + collate). Both see every training row once per epoch.",
    "Torch-RecHub drops one training row when rows % batch_size == 1 (a "
    "1-row batch crashes its BatchNorm; its loader has no drop_last).",
    "Initialisation: each library's own defaults (torch.manual_seed(seed) "
    "before building the model in both).",
    "Both libraries are scored with mtl_reco's AUC (Mann-Whitney, ties 1/2) "
    "and LogLoss functions on the same test rows.",
]

#: Published Census-Income (task group 1) test AUCs, one row per figure.
PAPER_FIGURES: list[dict[str, Any]] = [
    {"model": m, "task": t, "figure": f, "auc": a, "source": s}
    for m, t, f, a, s in [
        ("mmoe", "income", "best", 0.9410, "MMoE paper Table 1"),
        ("mmoe", "income", "mean", 0.9359, "MMoE paper Table 1"),
        ("mmoe", "marital", "best", 0.9926, "MMoE paper Table 1"),
        ("mmoe", "marital", "mean", 0.9927, "MMoE paper Table 1"),
        ("shared_bottom", "income", "best", 0.9361, "MMoE paper Table 1"),
        ("shared_bottom", "income", "mean", 0.9295, "MMoE paper Table 1"),
        ("shared_bottom", "marital", "best", 0.9915, "MMoE paper Table 1"),
        ("shared_bottom", "marital", "mean", 0.9921, "MMoE paper Table 1"),
        ("ple", "income", "reported", 0.9522, "PLE paper"),
        ("ple", "marital", "reported", 0.9945, "PLE paper"),
    ]
]
PAPERS = {
    "MMoE paper Table 1": "J. Ma, Z. Zhao, X. Yi, J. Chen, L. Hong, E. H. Chi, "
    "Modeling Task Relationships in Multi-task Learning with Multi-gate "
    "Mixture-of-Experts, KDD 2018 (Census-Income group 1: income, marital "
    "status; best and mean test AUC over repeated runs)",
    "PLE paper": "H. Tang, J. Liu, M. Zhao, X. Gong, Progressive Layered "
    "Extraction (PLE), RecSys 2020 (Census-Income income / marital status)",
}
PAPER_NOTE = (
    "The papers tested on the official UCI test file (census-income.test, "
    "99,762 rows, split 1:1 into validation/test in the MMoE paper), which is "
    "not available here; our figures come from a seeded split of the 199,523-row "
    "training file, so the comparison with the papers is indicative only."
)

LAYOUT = {
    "rows": "one row per (model, library, seed, task) of a run that finished: "
    "test_auc, test_logloss, valid_auc (of the scored weights), best_epoch, "
    "scored_epoch, epochs_run, stopped_early, seconds_per_epoch (median over "
    "the run's epochs, training only), fit_seconds (training + per-epoch "
    "validation), n_parameters",
    "runs": "one entry per (model, library, seed): status ok|error, error "
    "message, per-epoch valid AUCs and train seconds, the scored test/valid "
    "metrics",
    "summary": "one row per (model, library, task): n_seeds, test_auc_mean, "
    "test_auc_std (sample std, ddof=1; null for one seed), test_auc_min/max, "
    "test_logloss_mean, seconds_per_epoch_mean, epochs_run_mean",
    "side_by_side": "one row per (model, task): mtl_reco and torch_rechub "
    "{mean, std, n} and the paper figures {best, mean, reported}",
    "paper": "published figures, one row per (model, task, figure)",
    "errors": "runs that raised: model, library, seed, error",
}


# -- data -----------------------------------------------------------------------------
@dataclass
class CensusData:
    """The encoded split, for both libraries.

    Attributes:
        schema: mtl_reco's feature schema of the encoded tables.
        tables: ``train``/``valid``/``test`` tensor tables.
        arrays: The same splits as numpy arrays (Torch-RecHub's input).
        info: The JSON ``data`` section (file, rows, label rates, split).
    """

    schema: FeatureSchema
    tables: dict[str, TensorTable]
    arrays: dict[str, _rechub.Arrays]
    info: dict[str, Any]


def default_census_path() -> Path:
    """The Census file under ``$MTL_RECO_SHARED_DATA`` (or ``../shared/data``)."""
    root = os.environ.get("MTL_RECO_SHARED_DATA")
    base = Path(root) if root else _common.PROJECT_ROOT.parent / "shared" / "data"
    return base / CENSUS_FILE


def _arrays(table: TensorTable, schema: FeatureSchema) -> _rechub.Arrays:
    return _rechub.Arrays(
        sparse=table.sparse.numpy(),
        dense=table.dense.numpy(),
        labels=table.labels.numpy(),
        sparse_names=schema.sparse_names,
        vocab_sizes=[f.cardinality for f in schema.sparse],
        dense_names=schema.dense_names,
    )


def prepare_data(
    path: Path, rows: int | None = None, split_seed: int = SPLIT_SEED
) -> CensusData:
    """Read, label, split and encode the Census file with mtl_reco's library.

    Args:
        path: The raw Census-Income file (``.csv.gz``).
        rows: Keep only the first ``rows`` lines (``None``: all).
        split_seed: Seed of the random 80/10/10 split.
    """
    start = time.perf_counter()
    raw_schema, raw = read_source(
        "census_income", {"path": str(path), "task_group": "income_marital"}
    )
    if rows is not None:
        head = next(iter(raw.iter_chunks(chunk_rows=rows)))
        raw = FrameTable(head.iloc[:rows].reset_index(drop=True))
    plan = plan_labels(raw_schema, LabelsConfig())
    if tuple(plan.task_names) != TASKS:
        raise RuntimeError(f"unexpected Census tasks {plan.task_names}")
    labelled = FrameTable(label_table(raw, plan).to_pandas())
    split_config = SplitConfig(seed=split_seed)
    split_plan = plan_split(
        labelled,
        split_config,
        split_column=plan.split_column,
        time_column=plan.time_column,
    )
    splits = {
        k: FrameTable(v.to_pandas())
        for k, v in split_table(labelled, split_plan).items()
    }
    encoding = EncodingConfig()
    encoder = FeatureEncoder.fit(
        splits["train"],
        sparse=plan.sparse,
        dense=plan.dense,
        config=encoding,
        labels=plan.task_names,
        extras=plan.extras,
    )
    schema = encoder.feature_schema(plan.task_specs, plan.funnel, extras=())
    tables = {
        name: load_tensor_table(encoder.transform_table(t), schema, list(TASKS))
        for name, t in splits.items()
    }
    arrays = {name: _arrays(t, schema) for name, t in tables.items()}
    n_raw = sum(len(t) for t in tables.values())
    source_rows = f"all {n_raw:,} rows" if rows is None else f"the first {n_raw:,} rows"
    info = {
        "file": str(path),
        "rows_read": n_raw,
        "rows_limit": rows,
        "tasks": [
            {
                "name": t,
                "label": TASK_DESCRIPTIONS[t],
                "positive_rate": {
                    s: float(tables[s].labels[:, i].mean()) for s in tables
                },
                "positives": {s: int(tables[s].labels[:, i].sum()) for s in tables},
            }
            for i, t in enumerate(TASKS)
        ],
        "split": {
            "method": split_plan.method,
            "seed": split_seed,
            "ratios": dict(SPLIT_RATIOS),
            "rows": {s: len(t) for s, t in tables.items()},
            "description": (
                f"seeded random split of {source_rows} of the Census-Income "
                "training file by mtl_reco's split stage (hash of seed "
                f"{split_seed} and row index, 80/10/10 train/valid/test); "
                "encoder fitted on train only. The official test file is not used."
            ),
        },
        "features": {
            "sparse": len(schema.sparse),
            "dense": len(schema.dense),
            "sparse_names": schema.sparse_names,
            "dense_names": schema.dense_names,
            "total_vocabulary": int(sum(f.cardinality for f in schema.sparse)),
            "encoding": {
                "min_count": encoding.min_count,
                "dense_scaling": encoding.dense_scaling,
                "unseen_or_rare": "id 0",
            },
        },
        "prep_seconds": round(time.perf_counter() - start, 2),
    }
    return CensusData(schema, tables, arrays, info)


# -- mtl_reco -------------------------------------------------------------------------
def trainer_config(budget: Budget, seed: int, threads: int | None) -> TrainerConfig:
    """mtl_reco's trainer settings for ``budget`` (CPU, no checkpoint)."""
    return TrainerConfig(
        device="cpu",
        epochs=budget.max_epochs,
        batch_size=budget.batch_size,
        eval_batch_size=budget.eval_batch_size,
        seed=seed,
        num_threads=threads,
        progress=False,
        checkpoint_dir=None,
        optimizer=OptimizerConfig(
            name="adam", lr=budget.lr, weight_decay=budget.weight_decay
        ),
        early_stopping=EarlyStoppingConfig(
            metric=budget.monitor,
            mode="min" if budget.monitor.endswith("loss") else "max",
            patience=budget.patience,
            restore_best=True,
        ),
    )


def _task_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    return {"auc": auc_score(labels, probs), "logloss": log_loss(labels, probs)}


def run_ours(
    model_name: str,
    data: CensusData,
    budget: Budget,
    seed: int,
    *,
    weighting: str = "fixed",
    weighting_params: Mapping[str, Any] | None = None,
    model_params: Mapping[str, Any] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train and score one mtl_reco model; return its run record."""
    params = dict(MODEL_PARAMS[model_name] if model_params is None else model_params)
    params.update(OURS_EXTRA.get(model_name, {}))
    params["embedding_dim"] = budget.embedding_dim
    torch.manual_seed(seed)
    model = build_model(model_name, data.schema, list(TASKS), params)
    strategy = build_strategy(weighting, model.task_names, dict(weighting_params or {}))
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    config = trainer_config(budget, seed, threads)
    with _common.Timer() as timer:
        result = train(
            model, data.tables["train"], data.tables["valid"], strategy, config
        )
    scored: dict[str, dict[str, dict[str, float]]] = {}
    for split in ("valid", "test"):
        metrics = evaluate_model(
            model, data.tables[split], batch_size=budget.eval_batch_size, device="cpu"
        )
        scored[split] = {
            t: {
                "auc": metrics["tasks"][t]["auc"],
                "logloss": metrics["tasks"][t]["logloss"],
            }
            for t in TASKS
        }
    history = result.history
    epoch_seconds = [float(h["epoch_time_s"]) for h in history]
    return {
        "status": "ok",
        "n_parameters": n_params,
        "best_epoch": result.best_epoch,
        "scored_epoch": result.best_epoch
        if result.restored_best
        else result.epochs_run,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "monitor": result.monitor,
        "fit_seconds": timer.elapsed,
        "epoch_seconds": epoch_seconds,
        "seconds_per_epoch": statistics.median(epoch_seconds),
        "valid_history": [
            {t: h["valid"].get(f"{t}.auc") for t in TASKS} for h in history
        ],
        "train_loss_history": [{t: h["train_loss"][t] for t in TASKS} for h in history],
        "weights_per_epoch": [dict(h["weights"]) for h in history],
        "weights_final": strategy.current_weights(),
        "valid": scored["valid"],
        "test": scored["test"],
    }


def warm_up(data: CensusData, budget: Budget, batches: int = 8) -> float:
    """Untimed short mtl_reco fit (first-use costs out of the first timed run)."""
    rows = min(len(data.tables["train"]), batches * budget.batch_size)
    small = data.tables["train"].subset(torch.arange(rows))
    torch.manual_seed(0)
    model = build_model(
        "mmoe",
        data.schema,
        list(TASKS),
        {**MODEL_PARAMS["mmoe"], "embedding_dim": budget.embedding_dim},
    )
    strategy = build_strategy("fixed", model.task_names, {})
    config = replace(budget, max_epochs=1, patience=0)
    with _common.Timer() as timer:
        train(model, small, None, strategy, trainer_config(config, 0, None))
    return timer.elapsed


# -- Torch-RecHub ---------------------------------------------------------------------
def _rechub_loaders(data: CensusData, batch_size: int) -> tuple[Any, Any, Any, int]:
    """Its DataLoaders over our splits; drops 1 train row if needed (BatchNorm)."""
    from torch_rechub.utils.data import DataGenerator

    train = data.arrays["train"]
    trimmed = 0
    if len(train) % batch_size == 1:
        train, trimmed = train.head(len(train) - 1), 1
    splits = {
        "train": train,
        "valid": data.arrays["valid"],
        "test": data.arrays["test"],
    }
    x = {s: _rechub._x_dict(a) for s, a in splits.items()}
    y = {s: _rechub._y(a, esmm=False) for s, a in splits.items()}
    with _rechub._quiet():
        loaders = DataGenerator(x["train"], y["train"]).generate_dataloader(
            x_val=x["valid"],
            y_val=y["valid"],
            x_test=x["test"],
            y_test=y["test"],
            batch_size=batch_size,
        )
    return (*loaders, trimmed)


def _rechub_predict(
    model: torch.nn.Module, loader: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Its model's probabilities and the labels over a (non-shuffled) loader."""
    model.eval()
    preds, labels = [], []
    with torch.no_grad():
        for x_dict, ys in loader:
            preds.append(model(x_dict).float())
            labels.append(ys.float())
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()


def rechub_trainer(
    model: torch.nn.Module,
    budget: Budget,
    model_dir: str,
    adaptive: str | None = None,
) -> Any:
    """Torch-RecHub's ``MTLTrainer`` for ``budget`` (Adam, CPU, early stopping)."""
    from torch_rechub.trainers import MTLTrainer

    return MTLTrainer(
        model,
        task_types=["classification"] * len(TASKS),
        optimizer_fn=torch.optim.Adam,
        optimizer_params={"lr": budget.lr, "weight_decay": budget.weight_decay},
        adaptive_params=None if adaptive is None else {"method": adaptive},
        n_epoch=budget.max_epochs,
        earlystop_taskid=0,
        earlystop_patience=budget.patience,
        device="cpu",
        model_path=model_dir,
    )


def run_rechub(
    model_name: str,
    data: CensusData,
    budget: Budget,
    seed: int,
    *,
    adaptive: str | None = None,
    model_params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (its ``MTLTrainer.fit``) and score one Torch-RecHub model."""
    params = dict(MODEL_PARAMS[model_name] if model_params is None else model_params)
    torch.manual_seed(seed)
    model, _ = _rechub.build_rechub_model(
        model_name, data.arrays["train"], budget.embedding_dim, params
    )
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train_dl, valid_dl, test_dl, trimmed = _rechub_loaders(data, budget.batch_size)
    epoch_seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="rechub_census_") as model_dir:
        trainer = rechub_trainer(model, budget, model_dir, adaptive)
        inner = trainer.train_one_epoch

        def timed_epoch(loader: Any) -> Any:  # timing only, behaviour unchanged
            start = time.perf_counter()
            out = inner(loader)
            epoch_seconds.append(time.perf_counter() - start)
            return out

        trainer.train_one_epoch = timed_epoch
        with _common.Timer() as timer, _rechub._quiet():
            log_rows = trainer.fit(train_dl, valid_dl)
        model = trainer.model
    n_tasks = len(TASKS)
    valid_history = [
        {t: float(row[n_tasks + i]) for i, t in enumerate(TASKS)} for row in log_rows
    ]
    income_valid = [v[TASKS[0]] for v in valid_history]
    best_epoch = 1 + int(np.argmax(income_valid))
    epochs_run = len(log_rows)
    stopped = epochs_run < budget.max_epochs
    scored: dict[str, dict[str, dict[str, float]]] = {}
    for split, loader in (("valid", valid_dl), ("test", test_dl)):
        probs, labels = _rechub_predict(model, loader)
        scored[split] = {
            t: _task_metrics(labels[:, i], probs[:, i]) for i, t in enumerate(TASKS)
        }
    weights_final: dict[str, float] | None = None
    raw_weights: list[float] | None = None
    if getattr(trainer, "loss_weight", None) is not None:
        raw_weights = [float(w.item()) for w in trainer.loss_weight]
        if adaptive == "uwl":
            # Its loss: 2 * L_i * exp(-clamp(w_i, min=0)) + w_i, twice mtl_reco's
            # UWL objective: the comparable weight is exp(-max(w_i, 0)) (<= 1).
            weights_final = {
                t: math.exp(-max(w, 0.0))
                for t, w in zip(TASKS, raw_weights, strict=True)
            }
        else:
            weights_final = dict(zip(TASKS, raw_weights, strict=True))
    return {
        "status": "ok",
        "n_parameters": n_params,
        "best_epoch": best_epoch,
        "scored_epoch": best_epoch if stopped else epochs_run,
        "epochs_run": epochs_run,
        "stopped_early": stopped,
        "monitor": f"{TASKS[0]}.auc (earlystop_taskid=0)",
        "trimmed_train_rows": trimmed,
        "fit_seconds": timer.elapsed,
        "epoch_seconds": epoch_seconds,
        "seconds_per_epoch": (
            statistics.median(epoch_seconds) if epoch_seconds else None
        ),
        "valid_history": valid_history,
        "train_loss_history": [
            {t: float(row[i]) for i, t in enumerate(TASKS)} for row in log_rows
        ],
        "weights_final": weights_final,
        "raw_loss_weight_parameters": raw_weights,
        "valid": scored["valid"],
        "test": scored["test"],
    }


# -- running and summarising ----------------------------------------------------------
def guarded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn``; an exception becomes ``{"status": "error", "error": ...}``."""
    try:
        return fn()
    except Exception as exc:  # recorded in the JSON, never hidden
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(last.filename).name}:{last.lineno} in {last.name}"
        return {
            "status": "error",
            "error": f"{type(exc).__name__}: {exc}",
            "error_location": where,
        }


def run_rows(run: Mapping[str, Any], keys: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-task rows of one finished run (``keys`` first)."""
    if run.get("status") != "ok":
        return []
    rows = []
    for t in TASKS:
        rows.append(
            {
                **keys,
                "task": t,
                "test_auc": run["test"][t]["auc"],
                "test_logloss": run["test"][t]["logloss"],
                "valid_auc": run["valid"][t]["auc"],
                "best_epoch": run["best_epoch"],
                "scored_epoch": run["scored_epoch"],
                "epochs_run": run["epochs_run"],
                "stopped_early": run["stopped_early"],
                "seconds_per_epoch": run["seconds_per_epoch"],
                "fit_seconds": run["fit_seconds"],
                "n_parameters": run["n_parameters"],
            }
        )
    return rows


def _std(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def summarise(
    rows: Sequence[Mapping[str, Any]], group_keys: Sequence[str]
) -> list[dict[str, Any]]:
    """Mean/std across seeds per ``group_keys`` (first-seen order)."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in group_keys), []).append(row)
    out = []
    for key, members in groups.items():
        aucs = [float(r["test_auc"]) for r in members if r["test_auc"] is not None]
        aucs = [a for a in aucs if math.isfinite(a)]
        secs = [
            float(r["seconds_per_epoch"]) for r in members if r["seconds_per_epoch"]
        ]
        entry = dict(zip(group_keys, key, strict=True))
        entry.update(
            {
                "n_seeds": len(members),
                "seeds": [r["seed"] for r in members],
                "test_auc_mean": statistics.fmean(aucs) if aucs else None,
                "test_auc_std": _std(aucs),
                "test_auc_min": min(aucs) if aucs else None,
                "test_auc_max": max(aucs) if aucs else None,
                "test_logloss_mean": statistics.fmean(
                    float(r["test_logloss"]) for r in members
                ),
                "valid_auc_mean": statistics.fmean(
                    float(r["valid_auc"]) for r in members
                ),
                "epochs_run_mean": statistics.fmean(r["epochs_run"] for r in members),
                "seconds_per_epoch_mean": statistics.fmean(secs) if secs else None,
            }
        )
        out.append(entry)
    return out


def side_by_side(
    summary: Sequence[Mapping[str, Any]], models: Sequence[str]
) -> list[dict[str, Any]]:
    """Per (model, task): both libraries' mean/std and the paper figures."""
    out = []
    for m in models:
        for t in TASKS:
            entry: dict[str, Any] = {"model": m, "task": t}
            for lib in LIBRARIES:
                hit = [
                    s
                    for s in summary
                    if (s["model"], s["library"], s["task"]) == (m, lib, t)
                ]
                entry[lib] = (
                    {
                        "mean": hit[0]["test_auc_mean"],
                        "std": hit[0]["test_auc_std"],
                        "n": hit[0]["n_seeds"],
                    }
                    if hit
                    else None
                )
            figures = [p for p in PAPER_FIGURES if (p["model"], p["task"]) == (m, t)]
            entry["paper"] = {p["figure"]: p["auc"] for p in figures} or None
            entry["paper_source"] = figures[0]["source"] if figures else None
            ours, theirs = entry["mtl_reco"], entry["torch_rechub"]
            entry["mtl_reco_minus_torch_rechub"] = (
                ours["mean"] - theirs["mean"]
                if ours
                and theirs
                and ours["mean"] is not None
                and theirs["mean"] is not None
                else None
            )
            out.append(entry)
    return out


def fmt_auc(value: float | None) -> str:
    return "  -   " if value is None or not math.isfinite(value) else f"{value:.4f}"


def print_table(rows: Sequence[Mapping[str, Any]]) -> None:
    print(
        f"\n{'model':14s} {'task':8s} {'mtl_reco':>17s} {'torch_rechub':>17s} "
        f"{'paper best/mean':>17s}"
    )
    for r in rows:
        cells = []
        for lib in LIBRARIES:
            s = r[lib]
            if s is None:
                cells.append(f"{'-':>17s}")
            else:
                std = "" if s["std"] is None else f" ±{s['std']:.4f}"
                cells.append(f"{fmt_auc(s['mean']) + std:>17s}")
        paper = r["paper"] or {}
        if "reported" in paper:
            ptxt = fmt_auc(paper["reported"])
        elif paper:
            ptxt = f"{fmt_auc(paper.get('best'))}/{fmt_auc(paper.get('mean'))}"
        else:
            ptxt = "-"
        print(f"{r['model']:14s} {r['task']:8s} {cells[0]} {cells[1]} {ptxt:>17s}")


def progress_line(label: str, run: Mapping[str, Any]) -> str:
    if run["status"] != "ok":
        return f"  {label}: ERROR {run['error']}"
    aucs = ", ".join(f"{t} {run['test'][t]['auc']:.4f}" for t in TASKS)
    spe = run["seconds_per_epoch"]
    return (
        f"  {label}: test AUC {aucs} (scored epoch {run['scored_epoch']}, "
        f"{run['epochs_run']} run, {spe:.1f} s/epoch, {run['fit_seconds']:.0f} s)"
    )


# -- driver ---------------------------------------------------------------------------
def _csv(text: str, allowed: Sequence[str], what: str, parser: Any) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    for item in items:
        if item not in allowed:
            parser.error(f"unknown {what} {item!r}; choose from {', '.join(allowed)}")
    return items


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options shared with ``loss_weighting.py``."""
    parser.add_argument("--quick", action="store_true", help="CI smoke run (seconds)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per run (3)")
    parser.add_argument("--seed-base", type=int, default=1, help="first seed")
    parser.add_argument("--epochs", type=int, default=None, help="max epochs (20)")
    parser.add_argument("--patience", type=int, default=BUDGET.patience)
    parser.add_argument(
        "--monitor",
        default=BUDGET.monitor,
        help="mtl_reco's early-stopping metric on the validation split "
        "(mean.auc, income.auc, ...)",
    )
    parser.add_argument("--rows", type=int, default=None, help="first N file rows")
    parser.add_argument("--data", default=None, help="Census file (default: shared)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--results-dir", default=None, help="output folder")
    parser.add_argument("--name", default=None, help="output file stem")


def finish_common_args(args: argparse.Namespace, name: str) -> None:
    """Defaults that depend on ``--quick``."""
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.epochs = args.epochs or (1 if args.quick else BUDGET.max_epochs)
    if args.rows is None and args.quick:
        args.rows = QUICK_ROWS
    args.data = Path(args.data) if args.data else default_census_path()
    args.name = args.name or (f"{name}_quick" if args.quick else name)
    args.seed_list = [args.seed_base + i for i in range(args.seeds)]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--models", default=",".join(MODELS), help=",".join(MODELS))
    parser.add_argument(
        "--libraries", default=",".join(LIBRARIES), help=",".join(LIBRARIES)
    )
    args = parser.parse_args(argv)
    args.models = _csv(args.models, MODELS, "model", parser)
    args.libraries = _csv(args.libraries, LIBRARIES, "library", parser)
    finish_common_args(args, NAME)
    return args


def budget_from_args(args: argparse.Namespace) -> Budget:
    return replace(
        BUDGET, max_epochs=args.epochs, patience=args.patience, monitor=args.monitor
    )


def budget_record(budget: Budget, args: argparse.Namespace) -> dict[str, Any]:
    return {
        **asdict(budget),
        "optimizer": "adam (torch.optim.Adam, L2 weight decay) in both libraries",
        "early_stopping": (
            f"validation split only, patience {budget.patience}; mtl_reco monitors "
            f"{budget.monitor} and restores the best epoch; Torch-RecHub monitors "
            "income AUC (task 0)"
        ),
        "threads": torch.get_num_threads(),
        "seeds": args.seed_list,
    }


def check_environment(libraries: Sequence[str]) -> str | None:
    """Torch-RecHub's version, or ``None`` when it is not requested."""
    if "torch_rechub" not in libraries:
        return None
    return _rechub.rechub_version()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        rechub_version = check_environment(args.libraries)
    except ImportError as exc:
        print(
            f"Torch-RecHub is not installed ({exc}); install the bench extra "
            '(pip install -e ".[bench]") or pass --libraries mtl_reco',
            file=sys.stderr,
        )
        return 2
    if not args.data.is_file():
        print(f"Census file not found: {args.data}", file=sys.stderr)
        return 2
    machine = _common.machine_info()
    budget = budget_from_args(args)
    print(
        f"{NAME}: {machine['cpu_model']}, {machine['usable_cpus']} CPUs, torch "
        f"{machine['torch']} ({machine['torch_threads']} threads), Torch-RecHub "
        f"{rechub_version}, load {machine['load_average']}",
        flush=True,
    )
    with _common.Timer() as wall:
        data = prepare_data(args.data, args.rows)
        rows_split = data.info["split"]["rows"]
        print(
            f"data: {data.info['rows_read']:,} rows -> train {rows_split['train']:,}"
            f" / valid {rows_split['valid']:,} / test {rows_split['test']:,} "
            f"({data.info['features']['sparse']} sparse + "
            f"{data.info['features']['dense']} dense, "
            f"{data.info['prep_seconds']:.1f} s)",
            flush=True,
        )
        if "mtl_reco" in args.libraries:
            warm_up(data, budget)
        runs: list[dict[str, Any]] = []
        for model_name in args.models:
            for library in args.libraries:
                for seed in args.seed_list:
                    label = f"[{model_name} / {library} / seed {seed}]"
                    print(f"{label} training ...", flush=True)
                    if library == "mtl_reco":
                        run = guarded(
                            lambda m=model_name, s=seed: run_ours(
                                m,
                                data,
                                budget,
                                s,
                                weighting="fixed",
                                weighting_params={"weights": dict.fromkeys(TASKS, 0.5)},
                            )
                        )
                    else:
                        run = guarded(
                            lambda m=model_name, s=seed: run_rechub(m, data, budget, s)
                        )
                    print(progress_line(label, run), flush=True)
                    runs.append(
                        {"model": model_name, "library": library, "seed": seed, **run}
                    )
    rows = [
        r
        for run in runs
        for r in run_rows(
            run, {"model": run["model"], "library": run["library"], "seed": run["seed"]}
        )
    ]
    summary = summarise(rows, ("model", "library", "task"))
    table = side_by_side(summary, args.models)
    print_table(table)
    print(f"\n{PAPER_NOTE}")
    errors = [
        {k: run[k] for k in ("model", "library", "seed", "error", "error_location")}
        for run in runs
        if run["status"] != "ok"
    ]
    payload = {
        "layout_version": LAYOUT_VERSION,
        "layout": LAYOUT,
        "description": (
            "Census-Income (KDD) task group 1 (income > 50K, never married): test "
            "AUC of SharedBottom, MMoE, PLE and AITM trained by mtl_reco and by "
            "Torch-RecHub 0.9.0 on the same split under the same budget, mean and "
            "std across seeds, beside the MMoE/PLE papers' figures."
        ),
        "note": PAPER_NOTE,
        "config": {
            "quick": args.quick,
            "models": args.models,
            "libraries": args.libraries,
            "seeds": args.seed_list,
            "budget": budget_record(budget, args),
            "model_params": {m: MODEL_PARAMS[m] for m in args.models},
            "mtl_reco_only_params": {
                m: OURS_EXTRA[m] for m in args.models if m in OURS_EXTRA
            },
            "objective": "mean of the task BCE losses (mtl_reco: fixed 0.5/0.5)",
            "differences": DIFFERENCES,
        },
        "data": data.info,
        "machine": machine,
        "load_average_end": _common.load_average(),
        "rechub_version": rechub_version,
        "paper": PAPER_FIGURES,
        "papers": PAPERS,
        "rows": rows,
        "summary": summary,
        "side_by_side": table,
        "runs": runs,
        "errors": errors,
        "wall_s": round(wall.elapsed, 1),
        "peak_rss_mb": _common.peak_rss_mb(),
    }
    path = _common.write_result(
        args.name, payload, None if args.results_dir is None else Path(args.results_dir)
    )
    print(f"\nwrote {path} ({wall.elapsed:.0f} s)")
    if errors:
        print(f"{len(errors)} run(s) failed; see 'errors' in the JSON", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
