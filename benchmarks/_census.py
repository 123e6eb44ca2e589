"""Census-Income in the MMoE paper's setup, for ``census_quality.py`` and
``loss_weighting.py``: options, data, one run per library, summary, driver.

Task group 1 of Ma et al. (KDD 2018), ``income`` (> 50K) and ``marital``
(never married), on the UCI Census-Income (KDD) training file, labelled,
split (seeded random 80/10/10, seed 17) and encoded (encoder fitted on
train) by mtl_reco's library; Torch-RecHub gets the same encoded arrays. The
budget is Torch-RecHub's Census example (``examples/ranking/run_census.py``).
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

import _rechub
import _simulated
import harness
from harness import option
from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.evaluation import evaluate_model
from mtl_reco.modeling.metrics import auc_score, log_loss
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.modeling.trainer import train
from mtl_reco.modeling.weighting.registry import build_strategy
from mtl_reco.processing.config import EncodingConfig, LabelsConfig, SplitConfig
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
SHARED = harness.PROJECT_ROOT.parent / "shared" / "data"
DATA = Path(os.environ.get("MTL_RECO_SHARED_DATA") or SHARED) / FILE


@dataclass
class Options(harness.Config):
    seeds: int = option(3, "seeds per configuration", quick=1)
    seed_base: int = option(1, "first seed")
    epochs: int = option(20, "most epochs (early stopping)", quick=1)
    patience: int = option(3, "early-stopping patience (validation split)")
    monitor: str = option("mean.auc", "mtl_reco's early-stopping metric")
    rows: int | None = option(None, "read only the first N rows", quick=4000)
    data: str = option(str(DATA), "the Census-Income file")

    @property
    def seed_list(self) -> list[int]:
        return [self.seed_base + i for i in range(self.seeds)]


def prepare(path: str, rows: int | None) -> tuple[Any, dict[str, Any]]:
    """The encoded splits and the data's facts."""
    options = {"path": path, "task_group": "income_marital"}
    raw_schema, raw = read_source("census_income", options)
    if rows is not None:
        head = next(iter(raw.iter_chunks(chunk_rows=rows)))
        raw = FrameTable(head.iloc[:rows].reset_index(drop=True))
    split = SplitConfig(seed=SPLIT_SEED)
    data = _simulated.encode(raw_schema, raw, LabelsConfig(), split, EncodingConfig())
    if tuple(data.schema.task_names) != TASKS:
        raise RuntimeError(f"unexpected Census tasks {data.schema.task_names}")
    by_split = {k: len(t) for k, t in data.tables.items()}
    rates = data.tables["train"].labels.mean(0).tolist()
    schema = data.schema
    info = {
        "file": path, "rows_read": sum(by_split.values()),
        "split": {"method": data.method, "seed": SPLIT_SEED, "rows": by_split},
        "positive_rate": dict(zip(TASKS, rates, strict=True)),
        "features": {"sparse": len(schema.sparse), "dense": len(schema.dense)},
        "prep_s": round(data.seconds, 2),
    }  # fmt: skip
    return data, info


def run_ours(arch: str, data: Any, seed: int, *, opts: Options, weighting: str,
             weighting_params: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Train one mtl_reco model (early stopping on the validation split, best
    epoch restored); score valid and test. ``None`` params take the seed."""
    params = {**MODEL_PARAMS[arch], **OURS_EXTRA.get(arch, {})}
    torch.manual_seed(seed)
    model = build_model(arch, data.schema, TASKS, {**params, "embedding_dim": 4})
    params = {k: seed if v is None else v for k, v in weighting_params.items()}
    strategy = build_strategy(weighting, model.task_names, params)
    mode = "min" if opts.monitor.endswith("loss") else "max"
    adam = {"name": "adam", "lr": BUDGET["lr"], "weight_decay": BUDGET["weight_decay"]}
    stop = {"metric": opts.monitor, "patience": opts.patience, "mode": mode}
    config = TrainerConfig.from_dict({
        "device": "cpu", "epochs": opts.epochs, "batch_size": BUDGET["batch_size"],
        "seed": seed, "progress": False, "optimizer": adam, "early_stopping": stop,
    })  # fmt: skip
    result = train(model, data.tables["train"], data.tables["valid"], strategy, config)
    scored = {}
    for split in ("valid", "test"):
        tasks = evaluate_model(model, data.tables[split], device="cpu")["tasks"]
        scored[split] = {t: {k: tasks[t][k] for k in ("auc", "logloss")} for t in TASKS}
    epochs, history = result.epochs_run, result.history
    return {
        "status": "ok", "epochs_run": epochs,
        "scored_epoch": result.best_epoch if result.restored_best else epochs,
        "seconds_per_epoch": statistics.median(h["epoch_time_s"] for h in history),
        "weights_final": strategy.current_weights(), **scored,
    }  # fmt: skip


def run_rechub(arch: str, data: Any, seed: int, *, opts: Options,
               adaptive: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Train one Torch-RecHub model with the same budget and score it."""
    return _rechub.fit_and_score(
        arch, {k: _rechub.Arrays.of(t, data.schema) for k, t in data.tables.items()},
        BUDGET["embedding_dim"], MODEL_PARAMS[arch], TASKS,
        batch_size=BUDGET["batch_size"], lr=BUDGET["lr"],
        weight_decay=BUDGET["weight_decay"], max_epochs=opts.epochs,
        patience=opts.patience, seed=seed, adaptive=adaptive,
        score=lambda y, p: {"auc": auc_score(y, p), "logloss": log_loss(y, p)},
    )  # fmt: skip


def summarise(runs: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Per (``key``, library, task): test AUC mean/std/n, min and max, mean
    LogLoss, epochs and seconds per epoch, final weight mean/std."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        if run["status"] == "ok":
            groups.setdefault((run[key], run["library"]), []).append(run)
    out = []
    for (name, library), members in groups.items():
        for task in TASKS:
            aucs = [r["test"][task]["auc"] for r in members]
            weights = [(r["weights_final"] or {}).get(task) for r in members]

            losses = [r["test"][task]["logloss"] for r in members]
            out.append({
                key: name, "library": library, "task": task,
                "test_auc": harness.mean_std(aucs), "test_auc_min": min(aucs),
                "test_auc_max": max(aucs),
                "test_logloss_mean": statistics.fmean(losses),
                "epochs_run_mean": statistics.fmean(r["epochs_run"] for r in members),
                "seconds_per_epoch_mean": statistics.fmean(
                    r["seconds_per_epoch"] for r in members),
                "weight_final": harness.mean_std(weights),
            })  # fmt: skip
    return out


def budget_note(config: dict[str, Any], split_rows: dict[str, int]) -> str:
    """The budget and split sentence both reports print."""
    c, b = config, BUDGET
    rows = ", ".join(f"{k} {v:,}" for k, v in split_rows.items())
    return (
        f"Budget (both libraries): batch {b['batch_size']}, embedding "
        f"{b['embedding_dim']}, Adam lr {b['lr']} (weight decay {b['weight_decay']}), "
        f"at most {c['epochs']} epochs, early stopping patience {c['patience']} on "
        f"the validation split; seeds {c['seed_list']}. Split rows: {rows}."
    )


Report = Callable[[dict[str, Any]], tuple[list[Any], dict[str, Any], list[str]]]


def drive(name: str, opts: Options, key: str, plan: list[tuple[str, str, Callable]],
          report: Report, **config: Any) -> int:  # fmt: skip
    """Run every (``key`` value, library, ``run(data, seed)``) of ``plan`` with
    every seed; write the summary, the report and the JSON. Exit status 1
    when an mtl_reco run failed (per model: any run), 2 when Torch-RecHub or
    the data is missing."""
    libraries = {library for _, library, _ in plan}
    version = None
    if "torch_rechub" in libraries:
        version = _rechub.require(" or pass --libraries mtl_reco")
        if version is None:
            return 2
    if not Path(opts.data).is_file():
        print(f"Census file not found: {opts.data}", file=sys.stderr)
        return 2
    result = harness.start(
        name, opts, seed_list=opts.seed_list, budget=BUDGET, **config
    )
    data, info = prepare(opts.data, opts.rows)
    harness.say(f"data: {info['split']}")
    if "mtl_reco" in libraries:  # an untimed short fit: first-use costs out
        rows = min(8 * BUDGET["batch_size"], len(data.tables["train"]))
        head = data.tables["train"].subset(torch.arange(rows))
        warm = replace(data, tables={**data.tables, "train": head})
        run_ours("mmoe", warm, 0, opts=replace(opts, epochs=1, patience=0),
                 weighting="fixed", weighting_params={})  # fmt: skip
    runs = []
    for value, library, run_one in plan:
        for seed in opts.seed_list:
            run = harness.guarded(run_one, data, seed)
            runs.append({key: value, "library": library, "seed": seed, **run})
            aucs = [f"{t} {run['test'][t]['auc']:.4f}" for t in TASKS if "test" in run]
            text = ", ".join(aucs) or run.get("error")
            harness.say(f"[{value} / {library} / {seed}] test AUC {text}")
    failed = [r for r in runs if r["status"] != "ok"]
    errors = [{k: r[k] for k in (key, "library", "seed", "error")} for r in failed]
    result.results = {"rechub_version": version, "data": info,
                      "summary": summarise(runs, key), "errors": errors}  # fmt: skip
    result.finish(report, opts.results_dir)
    return int(any(r["library"] == "mtl_reco" or key == "model" for r in failed))
