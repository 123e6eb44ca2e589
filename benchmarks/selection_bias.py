"""Sample selection bias: ESMM's pCVR vs a CVR model trained on clicks, vs the truth.

The ESMM paper (Ma et al., SIGIR 2018) argues that a conversion-rate model
trained on clicked impressions only is biased when it is used, as it must be,
on every impression, and that ESMM's latent pCVR, learnt from CTR and CTCVR
over the entire space, is not. Real logs cannot check this (a purchase
label exists only after a click); the built-in simulator can, because it
records every impression's true pCTR, pCVR and pCTCVR
(``src/mtl_reco/sources/simulated.py``: the conversion signal is correlated
with the click signal, partly through an intent no feature shows, so
clicked impressions convert more than unclicked ones would).

Per seed (``--seeds``; seed ``k`` simulates with seed ``2024 + k`` and trains
with seed ``2026 + k``), ``--rows`` simulated impressions go through the
project's data chain (labels, seeded 80/10/10 split, encoder fitted on train;
``benchmarks/_simulated.py``), then:

(a) **naive CVR**: the ESMM paper's BASE model, i.e. ESMM's own CVR branch
    (the same embedding and a tower of ESMM's ``cvr_dims``, untouched
    defaults from ``conf/base/parameters_training.yml``) trained alone on the
    CLICKED training rows with the purchase label: BCE, Adam with the
    trainer block's learning rate, weight decay and batch size, seeded like
    the trainer. It sees about 4 % of the rows per epoch, so it gets more
    epochs (``--naive-epochs``, default 20) with early stopping on the
    validation CVR AUC over clicked rows (patience max(2, the trainer's);
    best epoch restored). A plain loop, because the trainer only trains
    multi-task models;
(b) **ESMM**'s latent pCVR, ESMM trained with CTR and CTCVR on every
    impression by the project's trainer (``trainer`` block, ``fixed``
    weighting, early stopping on valid ``mean.auc``);
(c) **every architecture** (SharedBottom, ESMM, MMoE, PLE, AITM, the same
    trainer settings): test CTR AUC and CTCVR AUC, the oracle AUC (the true
    pCTR / pCTCVR as scores against the same labels, from
    ``metrics.evaluate``'s oracle support) and the gap to it, the usual CVR
    AUC on clicked rows, and each model's implied pCVR (ESMM's latent
    output; for the others pCTCVR / pCTR, clipped to [0, 1]) checked
    against the truth like (a) and (b).

pCVR against the truth, on ALL test impressions (and on the clicked and the
unclicked ones separately):

* ``spearman``: rank correlation with the true pCVR;
* ``auc_counterfactual``: AUC against counterfactual conversion labels
  drawn once per seed as Bernoulli(true pCVR) for every impression
  ("would it convert if it were clicked?"), with the oracle's AUC (the true
  pCVR as the score) beside it;
* ``mean_pred`` vs ``mean_true`` and their ratio (calibration in the large)
  and ``ece``: expected calibration error against the true pCVR, 10
  equal-frequency bins of the prediction, ``sum_b n_b / n * |mean pred_b -
  mean true pCVR_b|``;
* ``auc_clicked_observed``: the usual CVR AUC on clicked rows with the
  observed purchase label (the ESMM paper's CVR column).

    python benchmarks/selection_bias.py                   # 1 M rows, 3 seeds
    python benchmarks/selection_bias.py --rows 2000000 --seeds 1
    python benchmarks/selection_bias.py --quick           # CI smoke (tiny)

Output: ``benchmarks/results/selection_bias.json`` (``--quick``:
``selection_bias_quick.json``; ``--results-dir`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.nn import functional as F

import _common
import _simulated
from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.data import TensorTable
from mtl_reco.modeling.layers import FeatureEmbedding, Tower
from mtl_reco.modeling.metrics import auc_score
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.modeling.trainer import evaluate_model, predict, train
from mtl_reco.modeling.weighting.registry import build_strategy
from mtl_reco.schema import FeatureSchema

NAME = "selection_bias"
SIM_SEED, TRAIN_SEED = 2024, 2026
ECE_BINS = 10
SUBSETS = ("all", "clicked", "unclicked")

log = logging.getLogger("selection_bias")


def _say(message: str) -> None:
    print(message, flush=True)


# -- (a) the naive CVR model --------------------------------------------------------
class NaiveCVR(nn.Module):
    """ESMM's CVR branch on its own (the ESMM paper's BASE model).

    Paper: X. Ma et al., "Entire Space Multi-Task Model", SIGIR 2018 (BASE:
    the CVR part of ESMM trained on clicked impressions).

    Args:
        schema: Feature schema of the encoded data.
        dims: Hidden widths of the CVR tower (ESMM's ``cvr_dims``).
        embedding_dim: ESMM's ``embedding_dim`` (``None``: per-field sizes).
        activation: ESMM's hidden activation.
        dropout: ESMM's dropout.

    Shapes:
        ``forward(sparse (B, n_sparse), dense (B, n_dense))`` -> ``(B,)``
        pCVR logits.
    """

    def __init__(
        self,
        schema: FeatureSchema,
        dims: list[int],
        embedding_dim: int | None = None,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(schema, embedding_dim)
        self.tower = Tower(self.embedding.output_dim, dims, activation, dropout)

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Return ``(B,)`` logits."""
        out: torch.Tensor = self.tower(self.embedding(sparse, dense))
        return out


def _clicked(table: TensorTable) -> TensorTable:
    return table.subset(table.label("ctr") > 0.5)


def _naive_scores(model: NaiveCVR, table: TensorTable, batch: int) -> np.ndarray:
    model.eval()
    parts = []
    with torch.inference_mode():
        for b in table.batches(batch):
            parts.append(torch.sigmoid(model(b.sparse, b.dense)))
    model.train()
    return torch.cat(parts).numpy() if parts else np.zeros(0, np.float32)


def train_naive(
    schema: FeatureSchema,
    esmm_params: Mapping[str, Any],
    train_table: TensorTable,
    valid_table: TensorTable,
    cfg: TrainerConfig,
    max_epochs: int,
    patience: int,
) -> tuple[NaiveCVR, dict[str, Any]]:
    """Train :class:`NaiveCVR` on the clicked rows (purchase label).

    Adam with the trainer block's learning rate, weight decay and batch
    size; at most ``max_epochs`` epochs, stopped after ``patience`` epochs
    without a better validation CVR AUC (clicked rows), best epoch restored.
    """
    torch.manual_seed(cfg.seed)
    model = NaiveCVR(
        schema,
        list(esmm_params.get("cvr_dims", [256, 128])),
        esmm_params.get("embedding_dim"),
        esmm_params.get("activation", "relu"),
        float(esmm_params.get("dropout", 0.0)),
    )
    train_c, valid_c = _clicked(train_table), _clicked(valid_table)
    label = train_table.task_names.index("ctcvr")  # = purchase on clicked rows
    valid_y = valid_c.labels_dict()["ctcvr"]
    opt = torch.optim.Adam(
        model.parameters(),
        lr=cfg.optimizer.lr,
        weight_decay=cfg.optimizer.weight_decay,
        fused=True,
    )
    shuffle = torch.Generator().manual_seed(cfg.seed)
    es = cfg.early_stopping
    best, best_epoch, best_state, bad = -math.inf, 0, None, 0
    history = []
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        model.train()
        total, n = 0.0, 0
        for b in train_c.batches(cfg.batch_size, shuffle=True, generator=shuffle):
            loss = F.binary_cross_entropy_with_logits(
                model(b.sparse, b.dense), b.labels[:, label]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b.labels)
            n += len(b.labels)
        auc = auc_score(valid_y, _naive_scores(model, valid_c, cfg.eval_batch_size))
        history.append({"epoch": epoch, "train_loss": total / max(n, 1), "valid": auc})
        if not math.isnan(auc) and auc > best + es.min_delta:
            best, best_epoch, bad = auc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if patience > 0 and bad >= patience:
                break
    if es.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    info = {
        "train_rows": len(train_c),
        "monitor": "valid cvr auc on clicked rows",
        "max_epochs": max_epochs,
        "patience": patience,
        "best_epoch": best_epoch,
        "best_score": best if best_epoch else None,
        "epochs_run": len(history),
        "history": history,
        "train_s": round(time.perf_counter() - start, 2),
    }
    return model, info


# -- pCVR against the truth ------------------------------------------------------------
def calibration_error(pred: np.ndarray, truth: np.ndarray, bins: int) -> float:
    """ECE against the true probability: equal-frequency bins of ``pred``."""
    if pred.size == 0:
        return math.nan
    order = np.argsort(pred, kind="stable")
    err = 0.0
    for chunk in np.array_split(order, min(bins, pred.size)):
        err += chunk.size * abs(float(pred[chunk].mean()) - float(truth[chunk].mean()))
    return err / pred.size


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def pcvr_vs_truth(
    pcvr: np.ndarray,
    true_pcvr: np.ndarray,
    counterfactual: np.ndarray,
    clicked: np.ndarray,
    purchased: np.ndarray,
) -> dict[str, Any]:
    """Ranking and calibration of a pCVR on all / clicked / unclicked rows."""
    p = np.asarray(pcvr, dtype=np.float64)
    out: dict[str, Any] = {}
    for subset in SUBSETS:
        mask = {
            "all": np.ones_like(clicked),
            "clicked": clicked,
            "unclicked": ~clicked,
        }[subset]
        ps, ts, ys = p[mask], true_pcvr[mask], counterfactual[mask]
        mean_true = float(ts.mean()) if ts.size else math.nan
        mean_pred = float(ps.mean()) if ps.size else math.nan
        out[subset] = {
            "rows": int(mask.sum()),
            "spearman": _spearman(ps, ts),
            "auc_counterfactual": auc_score(ys, ps),
            "mean_pred": mean_pred,
            "mean_true": mean_true,
            "mean_ratio": mean_pred / mean_true if mean_true else math.nan,
            "ece": calibration_error(ps, ts, ECE_BINS),
        }
    out["auc_clicked_observed"] = auc_score(purchased[clicked], p[clicked])
    return out


def oracle_vs_truth(
    true_pcvr: np.ndarray, counterfactual: np.ndarray, clicked: np.ndarray
) -> dict[str, Any]:
    """The oracle's AUC against the counterfactual labels, per subset."""
    masks = {"all": np.ones_like(clicked), "clicked": clicked, "unclicked": ~clicked}
    return {
        name: {"auc_counterfactual": auc_score(counterfactual[m], true_pcvr[m])}
        for name, m in masks.items()
    }


# -- (c) the multi-task models --------------------------------------------------------
def train_architecture(
    arch: str,
    params: dict[str, Any],
    data: _simulated.FunnelData,
    cfg: TrainerConfig,
    weighting: Mapping[str, Any],
) -> tuple[dict[str, Any], np.ndarray]:
    """Train one architecture; return its test metrics and implied pCVR."""
    torch.manual_seed(cfg.seed)
    model = build_model(arch, data.schema, config=model_params(params, arch))
    strategy = build_strategy(
        weighting.get("name", "fixed"), model.task_names, weighting.get("params")
    )
    start = time.perf_counter()
    result = train(model, data.tables["train"], data.tables["valid"], strategy, cfg)
    train_s = time.perf_counter() - start
    test = data.tables["test"]
    metrics = evaluate_model(model, test, batch_size=cfg.eval_batch_size, device="cpu")
    probs = predict(model, test, cfg.eval_batch_size, "cpu")
    if "cvr" in probs:
        pcvr, source = probs["cvr"], "latent"
    else:
        pcvr = np.clip(probs["ctcvr"] / np.maximum(probs["ctr"], 1e-12), 0.0, 1.0)
        source = "ratio"
    tasks, funnel = metrics["tasks"], metrics.get("funnel", {})
    row = {
        "model": arch,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "monitor": result.monitor,
        "train_s": round(train_s, 2),
        "samples_per_s": statistics.fmean([h["samples_per_s"] for h in result.history]),
        "ctr_auc": tasks["ctr"]["auc"],
        "ctr_oracle_auc": tasks["ctr"].get("oracle_auc"),
        "ctr_oracle_gap": tasks["ctr"].get("oracle_gap"),
        "ctcvr_auc": tasks["ctcvr"]["auc"],
        "ctcvr_oracle_auc": tasks["ctcvr"].get("oracle_auc"),
        "ctcvr_oracle_gap": tasks["ctcvr"].get("oracle_gap"),
        "cvr_auc_clicked": funnel.get("cvr_auc"),
        "cvr_oracle_auc_clicked": funnel.get("cvr_oracle_auc"),
        "cvr_score": source,
        "ctr_logloss": tasks["ctr"]["logloss"],
        "ctcvr_logloss": tasks["ctcvr"]["logloss"],
        "notes": metrics.get("notes", []),
    }
    return row, pcvr


def model_params(params: dict[str, Any], arch: str) -> dict[str, Any]:
    return _simulated.model_params(arch, params)


# -- one seed ----------------------------------------------------------------------
def run_seed(
    k: int, args: argparse.Namespace, params: dict[str, Any]
) -> dict[str, Any]:
    """Simulate, train (a), (b), (c) and score against the truth, for seed ``k``."""
    sim_seed, train_seed = SIM_SEED + k, TRAIN_SEED + k
    _say(f"seed {k}: simulating {args.rows:,} impressions (seed {sim_seed}) ...")
    data = _simulated.prepare(args.rows, sim_seed, params=params)
    splits = data.describe()
    _say(
        f"  encoded in {data.seconds:.1f} s; "
        + ", ".join(
            f"{n} {s['rows']:,} rows / {s['clicks']:,} clicks / "
            f"{s['purchases']:,} purchases"
            for n, s in splits.items()
        )
    )
    overrides: dict[str, Any] = {"seed": train_seed}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.threads is not None:
        overrides["num_threads"] = args.threads
    cfg = _simulated.trainer_config(params, **overrides)

    test = data.tables["test"]
    labels = test.labels_dict()
    clicked = labels["ctr"] > 0.5
    purchased = labels["ctcvr"] > 0.5
    true_pcvr = np.asarray(test.extras["true_pcvr"], dtype=np.float64)
    rng = np.random.default_rng([sim_seed, 7])
    counterfactual = rng.random(true_pcvr.size) < true_pcvr

    def score(pcvr: np.ndarray) -> dict[str, Any]:
        return pcvr_vs_truth(pcvr, true_pcvr, counterfactual, clicked, purchased)

    esmm_params = model_params(params, "esmm")
    naive, naive_info = train_naive(
        data.schema,
        esmm_params,
        data.tables["train"],
        data.tables["valid"],
        cfg,
        max_epochs=args.naive_epochs,
        patience=max(2, cfg.early_stopping.patience),
    )
    naive_truth = score(_naive_scores(naive, test, cfg.eval_batch_size))
    _say(
        f"  naive CVR (clicked rows only, {naive_info['train_rows']:,} rows): "
        f"{naive_info['epochs_run']} epochs, {naive_info['train_s']:.1f} s; "
        f"all-impression AUC vs counterfactual "
        f"{naive_truth['all']['auc_counterfactual']:.4f}, mean pCVR "
        f"{naive_truth['all']['mean_pred']:.4f} vs true "
        f"{naive_truth['all']['mean_true']:.4f}"
    )
    models: dict[str, Any] = {}
    truth: dict[str, Any] = {"naive_cvr": naive_truth}
    for arch in args.models:
        row, pcvr = train_architecture(
            arch, params, data, cfg, params[arch].get("weighting") or {}
        )
        models[arch] = row
        truth[arch] = score(pcvr)
        _say(
            f"  {arch}: {row['epochs_run']} epochs, {row['train_s']:.1f} s; test "
            f"CTR AUC {row['ctr_auc']:.4f} (oracle {row['ctr_oracle_auc']:.4f}), "
            f"CTCVR AUC {row['ctcvr_auc']:.4f} (oracle "
            f"{row['ctcvr_oracle_auc']:.4f}); pCVR ({row['cvr_score']}) AUC vs "
            f"counterfactual {truth[arch]['all']['auc_counterfactual']:.4f}"
        )
    return {
        "seed_index": k,
        "simulator_seed": sim_seed,
        "trainer_seed": train_seed,
        "splits": splits,
        "data_s": round(data.seconds, 2),
        "naive_cvr": naive_info,
        "oracle_pcvr": oracle_vs_truth(true_pcvr, counterfactual, clicked),
        "pcvr_vs_truth": truth,
        "models": models,
    }


# -- aggregation -------------------------------------------------------------------
def _stats(values: list[Any]) -> dict[str, Any]:
    finite = [
        float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)
    ]
    return {
        "mean": statistics.fmean(finite) if finite else None,
        "std": statistics.stdev(finite) if len(finite) > 1 else None,
        "n": len(finite),
    }


def _aggregate(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean/std over seeds of every numeric leaf (same nesting)."""
    first = records[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, Mapping):
            out[key] = _aggregate([r[key] for r in records])
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = _stats([r.get(key) for r in records])
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    truth = _aggregate([r["pcvr_vs_truth"] for r in runs])
    models = _aggregate([r["models"] for r in runs])
    oracle = _aggregate([r["oracle_pcvr"] for r in runs])
    headline: dict[str, Any] = {}
    if "esmm" in truth:
        per_seed = [
            r["pcvr_vs_truth"]["esmm"]["all"]["auc_counterfactual"]
            - r["pcvr_vs_truth"]["naive_cvr"]["all"]["auc_counterfactual"]
            for r in runs
        ]
        headline = {
            "esmm_minus_naive_auc_counterfactual_all": _stats(per_seed),
            "esmm_auc_counterfactual_all": truth["esmm"]["all"]["auc_counterfactual"],
            "naive_auc_counterfactual_all": truth["naive_cvr"]["all"][
                "auc_counterfactual"
            ],
            "oracle_auc_counterfactual_all": oracle["all"]["auc_counterfactual"],
            "esmm_mean_ratio_unclicked": truth["esmm"]["unclicked"]["mean_ratio"],
            "naive_mean_ratio_unclicked": truth["naive_cvr"]["unclicked"]["mean_ratio"],
            "esmm_ece_all": truth["esmm"]["all"]["ece"],
            "naive_ece_all": truth["naive_cvr"]["all"]["ece"],
        }
    return {
        "pcvr_vs_truth": truth,
        "oracle_pcvr": oracle,
        "models": models,
        "headline": headline,
    }


# -- CLI ---------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run (tiny)")
    parser.add_argument(
        "--rows", type=int, default=None, help="simulated impressions per seed"
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="number of seeds (default 3)"
    )
    parser.add_argument(
        "--models",
        default=",".join(_simulated.ARCHS),
        help="comma-separated architectures for (c) (ESMM is needed for (b))",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="override trainer.epochs (default: conf/base value; --quick: 1)",
    )
    parser.add_argument(
        "--naive-epochs",
        type=int,
        default=None,
        help="most epochs of the naive CVR model (early stopping, patience "
        "max(2, trainer patience)); default 20 (it sees ~4%% of the rows per "
        "epoch); --quick: 1",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = 30_000 if args.quick else 1_000_000
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    if args.epochs is None and args.quick:
        args.epochs = 1
    if args.naive_epochs is None:
        args.naive_epochs = 1 if args.quick else 20
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(_simulated.ARCHS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {_simulated.ARCHS}")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("mtl_reco.modeling.trainer").setLevel(logging.INFO)
    wall = time.perf_counter()
    params = _simulated.project_parameters()
    machine = _common.machine_info()
    runs = [run_seed(k, args, params) for k in range(args.seeds)]
    cfg = _simulated.trainer_config(params)
    payload = {
        "config": {
            "quick": args.quick,
            "rows": args.rows,
            "seeds": args.seeds,
            "models": args.models,
            "epochs": args.epochs if args.epochs is not None else cfg.epochs,
            "threads": args.threads,
            "trainer": "conf/base/parameters_training.yml trainer block (device cpu, "
            "no checkpoint)",
            "batch_size": cfg.batch_size,
            "lr": cfg.optimizer.lr,
            "early_stopping": cfg.early_stopping.to_dict(),
            "simulator": {
                k: v
                for k, v in params["sources"]["simulated"].items()
                if k not in ("n_rows", "seed")
            },
            "seeding": f"seed k: simulator {SIM_SEED} + k, trainer {TRAIN_SEED} + k",
            "naive_cvr": "ESMM's CVR branch (embedding + cvr_dims tower) trained "
            "alone on clicked training rows with the purchase label",
            "naive_max_epochs": args.naive_epochs,
            "counterfactual_labels": "Bernoulli(true pCVR) for every test "
            "impression, rng seed [simulator seed, 7]",
            "ece": f"{ECE_BINS} equal-frequency bins of the prediction, against "
            "the true pCVR",
            "implied_pcvr": "latent output when the model has one (ESMM), else "
            "clip(pCTCVR / pCTR, 0, 1)",
        },
        "machine": machine,
        "runs": runs,
        "summary": summarise(runs),
        "load_average_end": _common.load_average(),
        "peak_rss_mb": _common.peak_rss_mb(),
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    name = f"{NAME}_quick" if args.quick else NAME
    path = _common.write_result(name, payload, args.results_dir)
    _say(f"wrote {path} ({payload['wall_s']} s)")
    return path


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
