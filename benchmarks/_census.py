"""Census-Income in the MMoE paper's setup, for ``census_quality.py`` and
``loss_weighting.py``: data, budget, one training run per library, summaries.

Task group 1 of Ma et al. (KDD 2018): ``income`` (> 50K, 6.2 % positive) and
``marital`` (never married, 43.4 %) on the UCI Census-Income (KDD) training
file (199,523 rows), prepared by mtl_reco's library as the
``data_processing`` pipeline chains it: labels -> seeded random 80/10/10
split (seed 17) -> encoder fitted on train (``min_count`` 2, rare/unseen ->
id 0, dense standard-scaled). Torch-RecHub gets the same encoded arrays.
The budget is Torch-RecHub's Census example (``examples/ranking/run_census.py``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import _rechub
import harness
from harness import option
from mtl_reco.experiment.loading import load_tensor_table
from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.data import TensorTable
from mtl_reco.modeling.evaluation import evaluate_model
from mtl_reco.modeling.metrics import auc_score, log_loss
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.modeling.schema import FeatureSchema
from mtl_reco.modeling.trainer import train
from mtl_reco.modeling.weighting.registry import build_strategy
from mtl_reco.processing.config import EncodingConfig, LabelsConfig, SplitConfig
from mtl_reco.processing.encoder import FeatureEncoder
from mtl_reco.processing.labels import label_table, plan_labels
from mtl_reco.processing.split import plan_split, split_table
from mtl_reco.sources.registry import read_source
from mtl_reco.tables import FrameTable

TASKS = ("income", "marital")
LIBRARIES = ("mtl_reco", "torch_rechub")
FILE = "census-income-kdd/uci-raw/census_income_1994_1995_train.csv.gz"
SPLIT_SEED = 17
BUDGET = {"batch_size": 1024, "embedding_dim": 4, "lr": 1e-3, "weight_decay": 1e-4}
MODEL_PARAMS: dict[str, dict[str, Any]] = {
    "shared_bottom": {"bottom_dims": [117], "tower_dims": [8]},
    "mmoe": {"n_experts": 8, "expert_dims": [16], "tower_dims": [8]},
    "ple": {"n_levels": 2, "n_specific_experts": 3, "n_shared_experts": 2,
            "expert_dims": [16], "tower_dims": [8]},
    "aitm": {"tower_dims": [32, 16], "head_dims": [8]},
}  # fmt: skip
#: mtl_reco-only settings: AITM's calibrator assumes a funnel Census lacks.
OURS_EXTRA = {"aitm": {"calibrator_alpha": 0.0}}
PAPER_NOTE = (
    "The papers tested on the official UCI test file (census-income.test, "
    "99,762 rows, split 1:1 into validation/test in the MMoE paper), which is "
    "not available here; our figures come from a seeded split of the "
    "199,523-row training file, so the comparison with the papers is "
    "indicative only."
)


def default_path() -> str:
    root = os.environ.get("MTL_RECO_SHARED_DATA")
    base = Path(root) if root else harness.PROJECT_ROOT.parent / "shared" / "data"
    return str(base / FILE)


@dataclass
class Options(harness.Config):
    """Options shared by the two Census benchmarks."""

    seeds: int = option(3, "seeds per configuration", quick=1)
    seed_base: int = option(1, "first seed")
    epochs: int = option(20, "most epochs (early stopping)", quick=1)
    patience: int = option(3, "early-stopping patience (validation split)")
    monitor: str = option("mean.auc", "mtl_reco's early-stopping metric")
    rows: int | None = option(None, "read only the first N rows", quick=4000)
    data: str = option(default_path(), "the Census-Income file")

    @property
    def seed_list(self) -> list[int]:
        return [self.seed_base + i for i in range(self.seeds)]


@dataclass
class CensusData:
    schema: FeatureSchema
    tables: dict[str, TensorTable]
    arrays: dict[str, _rechub.Arrays]
    info: dict[str, Any]


def prepare(path: str, rows: int | None) -> CensusData:
    """Read, label, split and encode the Census file with mtl_reco's library."""
    start = time.perf_counter()
    options = {"path": path, "task_group": "income_marital"}
    raw_schema, raw = read_source("census_income", options)
    if rows is not None:
        head = next(iter(raw.iter_chunks(chunk_rows=rows)))
        raw = FrameTable(head.iloc[:rows].reset_index(drop=True))
    plan = plan_labels(raw_schema, LabelsConfig())
    if tuple(plan.task_names) != TASKS:
        raise RuntimeError(f"unexpected Census tasks {plan.task_names}")
    labelled = FrameTable(label_table(raw, plan).to_pandas())
    split_plan = plan_split(
        labelled,
        SplitConfig(seed=SPLIT_SEED),
        split_column=plan.split_column,
        time_column=plan.time_column,
    )
    parts = split_table(labelled, split_plan)
    encoder = FeatureEncoder.fit(
        FrameTable(parts["train"].to_pandas()),
        sparse=plan.sparse,
        dense=plan.dense,
        config=EncodingConfig(),
        labels=plan.task_names,
        extras=plan.extras,
    )
    schema = encoder.feature_schema(plan.task_specs, plan.funnel, extras=())
    tables = {
        name: load_tensor_table(encoder.transform_table(part), schema, list(TASKS))
        for name, part in parts.items()
    }
    vocab = [f.cardinality for f in schema.sparse]
    arrays = {
        k: _rechub.Arrays(
            t.sparse.numpy(), t.dense.numpy(), t.labels.numpy(),
            schema.sparse_names, vocab, schema.dense_names,
        )
        for k, t in tables.items()
    }  # fmt: skip
    info = {
        "file": path,
        "rows_read": sum(len(t) for t in tables.values()),
        "split": {
            "method": split_plan.method,
            "seed": SPLIT_SEED,
            "rows": {k: len(t) for k, t in tables.items()},
        },
        "positive_rate": {
            t: float(tables["train"].labels[:, i].mean()) for i, t in enumerate(TASKS)
        },
        "features": {"sparse": len(schema.sparse), "dense": len(schema.dense)},
        "prep_s": round(time.perf_counter() - start, 2),
    }
    return CensusData(schema, tables, arrays, info)


def _scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    return {"auc": auc_score(labels, probs), "logloss": log_loss(labels, probs)}


def run_ours(
    arch: str, data: CensusData, seed: int, *, opts: Options, weighting: str,
    weighting_params: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Train one mtl_reco model (early stopping on the validation split, best
    epoch restored) and score valid and test."""
    params = {**MODEL_PARAMS[arch], **OURS_EXTRA.get(arch, {})}
    params["embedding_dim"] = BUDGET["embedding_dim"]
    torch.manual_seed(seed)
    model = build_model(arch, data.schema, list(TASKS), params)
    params = {k: seed if v is None else v for k, v in weighting_params.items()}
    strategy = build_strategy(weighting, model.task_names, params)
    mode = "min" if opts.monitor.endswith("loss") else "max"
    config = TrainerConfig.from_dict(
        {
            "device": "cpu",
            "epochs": opts.epochs,
            "batch_size": BUDGET["batch_size"],
            "seed": seed,
            "progress": False,
            "optimizer": {"name": "adam", "lr": BUDGET["lr"],
                          "weight_decay": BUDGET["weight_decay"]},
            "early_stopping": {"metric": opts.monitor, "patience": opts.patience,
                               "mode": mode},
        }
    )  # fmt: skip
    result = train(model, data.tables["train"], data.tables["valid"], strategy, config)
    scored = {}
    for split in ("valid", "test"):
        metrics = evaluate_model(model, data.tables[split], device="cpu")["tasks"]
        scored[split] = {
            t: {k: metrics[t][k] for k in ("auc", "logloss")} for t in TASKS
        }
    return {
        "status": "ok",
        "n_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "best_epoch": result.best_epoch,
        "scored_epoch": result.best_epoch
        if result.restored_best
        else result.epochs_run,
        "epochs_run": result.epochs_run,
        "seconds_per_epoch": statistics.median(
            h["epoch_time_s"] for h in result.history
        ),
        "weights_final": strategy.current_weights(),
        **scored,
    }


def run_rechub(
    arch: str,
    data: CensusData,
    seed: int,
    *,
    opts: Options,
    adaptive: str | None = None,
) -> dict[str, Any]:
    """Train one Torch-RecHub model with the same budget and score it."""
    return _rechub.fit_and_score(
        arch, data.arrays, BUDGET["embedding_dim"], MODEL_PARAMS[arch], TASKS,
        batch_size=BUDGET["batch_size"], lr=BUDGET["lr"],
        weight_decay=BUDGET["weight_decay"], max_epochs=opts.epochs,
        patience=opts.patience, seed=seed, score=_scores, adaptive=adaptive,
    )  # fmt: skip


def warm_up(data: CensusData) -> None:
    """An untimed short fit (first-use costs out of the first timed run)."""
    rows = min(len(data.tables["train"]), 8 * BUDGET["batch_size"])
    small = CensusData(data.schema, {**data.tables}, data.arrays, data.info)
    small.tables["train"] = data.tables["train"].subset(torch.arange(rows))
    opts = Options(epochs=1, patience=0)
    run_ours("mmoe", small, 0, opts=opts, weighting="fixed", weighting_params={})


def progress(label: str, run: dict[str, Any]) -> str:
    if run["status"] != "ok":
        return f"{label}: ERROR {run['error']}"
    aucs = ", ".join(f"{t} {run['test'][t]['auc']:.4f}" for t in TASKS)
    return (
        f"{label}: test AUC {aucs} (epoch {run['scored_epoch']} of "
        f"{run['epochs_run']}, {run['seconds_per_epoch']:.1f} s/epoch)"
    )


def summarise(runs: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Per (``key``, library, task): test AUC mean/std/n, min, max, LogLoss,
    epochs run and seconds per epoch (means), final weight mean/std."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        if run["status"] == "ok":
            groups.setdefault((run[key], run["library"]), []).append(run)
    out = []
    for (name, library), members in groups.items():
        for task in TASKS:
            aucs = [r["test"][task]["auc"] for r in members]
            weights = [(r["weights_final"] or {}).get(task) for r in members]
            out.append(
                {
                    key: name,
                    "library": library,
                    "task": task,
                    "test_auc": harness.mean_std(aucs),
                    "test_auc_min": min(aucs),
                    "test_auc_max": max(aucs),
                    "test_logloss_mean": statistics.fmean(
                        r["test"][task]["logloss"] for r in members
                    ),
                    "epochs_run_mean": statistics.fmean(
                        r["epochs_run"] for r in members
                    ),
                    "seconds_per_epoch_mean": statistics.fmean(
                        r["seconds_per_epoch"] for r in members
                    ),
                    "weight_final": harness.mean_std(weights),
                }
            )
    return out


def budget_note(config: dict[str, Any], split_rows: dict[str, int]) -> str:
    """The budget and split sentence both reports print."""
    c, b = config, BUDGET
    return (
        f"Budget (both libraries): batch {b['batch_size']}, embedding "
        f"{b['embedding_dim']}, Adam lr {b['lr']} (weight decay {b['weight_decay']}), "
        f"at most {c['epochs']} epochs, early stopping patience {c['patience']} on "
        f"the validation split; seeds {c['seed_list']}. Split rows: "
        + ", ".join(f"{k} {v:,}" for k, v in split_rows.items())
        + "."
    )


Plan = list[tuple[str, str, Callable[[CensusData, int], dict[str, Any]]]]


def drive(
    name: str, opts: Options, key: str, plan: Plan,
    report: Callable[[dict[str, Any]], tuple[list[Any], dict[str, Any], list[str]]],
    **config: Any,
) -> int:  # fmt: skip
    """The driver of both Census benchmarks: every (``key`` value, library,
    ``run(data, seed)``) of ``plan`` with every seed, then the summary, the
    report and the JSON. Exit status 1 when an mtl_reco run failed (or, per
    model, any run), 2 when Torch-RecHub or the data is missing."""
    libraries = {library for _, library, _ in plan}
    try:
        version = _rechub.rechub_version() if "torch_rechub" in libraries else None
    except ImportError as exc:
        print(
            f"Torch-RecHub is not installed ({exc}); install the bench extra "
            '(pip install -e ".[bench]") or pass --libraries mtl_reco',
            file=sys.stderr,
        )
        return 2
    if not Path(opts.data).is_file():
        print(f"Census file not found: {opts.data}", file=sys.stderr)
        return 2
    result = harness.start(
        name, opts, seed_list=opts.seed_list, budget=BUDGET, **config
    )
    data = prepare(opts.data, opts.rows)
    harness.say(f"data: {data.info['split']}")
    if "mtl_reco" in libraries:
        warm_up(data)
    runs = []
    for value, library, run_one in plan:
        for seed in opts.seed_list:
            run = harness.guarded(run_one, data, seed)
            runs.append({key: value, "library": library, "seed": seed, **run})
            harness.say(progress(f"[{value} / {library} / {seed}]", run))
    failed = [r for r in runs if r["status"] != "ok"]
    doc = {
        "config": result.config,
        "rechub_version": version,
        "data": data.info,
        "summary": summarise(runs, key),
        "errors": [
            {k: r[k] for k in (key, "library", "seed", "error")} for r in failed
        ],
    }
    result.results = {k: v for k, v in doc.items() if k != "config"}
    result.tables, result.figures, result.notes = report(doc)
    result.write(opts.results_dir)
    return int(any(r["library"] == "mtl_reco" or key == "model" for r in failed))
