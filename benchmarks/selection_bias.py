"""Sample selection bias: ESMM's pCVR vs a CVR model trained on clicks, vs the truth.

The ESMM paper (Ma et al., SIGIR 2018) argues that a CVR model trained on
clicked impressions is biased on the impressions it must also score, and
that ESMM's latent pCVR, learnt over every impression, is not. The simulator
records every impression's true pCTR, pCVR and pCTCVR, so per seed ``k``
(simulator seed 2024 + k, trainer seed 2026 + k) ``--rows`` impressions go
through the data chain (``_simulated.py``) and (a) the naive CVR model (the
paper's BASE: ESMM's CVR branch alone on the clicked training rows, purchase
label, early stopping on the validation CVR AUC), (b) ESMM and (c) every
architecture (the ``trainer`` block) are scored against the truth: AUC
against counterfactual labels (Bernoulli(true pCVR)), Spearman with the true
pCVR, mean prediction / truth and ECE (10 equal-frequency bins) on all,
clicked and unclicked test impressions; test CTR / CTCVR AUC and the gap to
the oracle (the true propensity as the score). Mean ± std over seeds.

    python benchmarks/selection_bias.py                   # 1 M rows, 3 seeds
    python benchmarks/selection_bias.py --rows 2000000 --seeds 1
    python benchmarks/selection_bias.py --models esmm --seeds 5   # (a) vs (b)
    python benchmarks/selection_bias.py --quick           # CI smoke (30 k rows)

Writes ``results/selection_bias.json`` (``--quick``: ``..._quick.json``).
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.nn import functional as F

import _simulated
import harness
from _simulated import ARCHS
from harness import Table, option
from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.data import TensorTable
from mtl_reco.modeling.evaluation import evaluate_model, predict
from mtl_reco.modeling.layers import FeatureEmbedding, Tower
from mtl_reco.modeling.metrics import auc_score, implied_cvr
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.modeling.trainer import train
from mtl_reco.modeling.weighting.registry import build_strategy
from mtl_reco.schema import FeatureSchema

NAME = "selection_bias"
SIM_SEED, TRAIN_SEED, ECE_BINS = 2024, 2026, 10
NAIVE = "naive CVR (clicked rows only)"


@dataclass
class Options(harness.Config):
    rows: int = option(1_000_000, "simulated impressions per seed", quick=30_000)
    seeds: int = option(3, "seeds", quick=1)
    models: tuple[str, ...] = option(ARCHS, "architectures of (c)", choices=ARCHS)
    epochs: int | None = option(None, "trainer epochs (default: conf)", quick=1)
    naive_epochs: int = option(20, "most epochs of the naive CVR model", quick=1)


class NaiveCVR(nn.Module):
    """ESMM's CVR branch alone (the ESMM paper's BASE model): ``(B,)`` logits."""

    def __init__(self, schema: FeatureSchema, esmm: Mapping[str, Any]) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(schema, esmm.get("embedding_dim"))
        dims = list(esmm.get("cvr_dims", [256, 128]))
        activation, dropout = esmm.get("activation", "relu"), esmm.get("dropout", 0.0)
        self.tower = Tower(self.embedding.output_dim, dims, activation, dropout)

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.tower(self.embedding(sparse, dense))
        return out

    def scores(self, table: TensorTable, batch: int) -> np.ndarray:
        self.eval()
        with torch.inference_mode():
            parts = [self(b.sparse, b.dense).sigmoid() for b in table.batches(batch)]
        self.train()
        return torch.cat(parts).numpy() if parts else np.zeros(0, np.float32)


def train_naive(
    data: _simulated.FunnelData, esmm: Mapping[str, Any], cfg: TrainerConfig,
    max_epochs: int,
) -> tuple[NaiveCVR, dict[str, Any]]:  # fmt: skip
    """(a): the naive model on the clicked training rows, purchase label."""
    torch.manual_seed(cfg.seed)
    model = NaiveCVR(data.schema, esmm)
    train_c, valid_c = (data.tables[s] for s in ("train", "valid"))
    train_c, valid_c = (t.subset(t.label("ctr") > 0.5) for t in (train_c, valid_c))
    label = train_c.task_names.index("ctcvr")  # = purchase on clicked rows
    opt = torch.optim.Adam(
        model.parameters(), lr=cfg.optimizer.lr,
        weight_decay=cfg.optimizer.weight_decay, fused=True,
    )  # fmt: skip
    shuffle = torch.Generator().manual_seed(cfg.seed)
    patience = max(2, cfg.early_stopping.patience)
    best, best_epoch, state, epoch = -math.inf, 0, None, 0
    for epoch in range(1, max_epochs + 1):
        for b in train_c.batches(cfg.batch_size, shuffle=True, generator=shuffle):
            loss = F.binary_cross_entropy_with_logits(
                model(b.sparse, b.dense), b.labels[:, label]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        y = valid_c.labels_dict()["ctcvr"]
        auc = auc_score(y, model.scores(valid_c, cfg.eval_batch_size))
        if not math.isnan(auc) and auc > best + cfg.early_stopping.min_delta:
            best, best_epoch, state = auc, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    if state is not None:
        model.load_state_dict(state)
    info = {"train_rows": len(train_c), "epochs_run": epoch, "best_epoch": best_epoch}
    return model, info


def subsets(clicked: np.ndarray) -> list[tuple[str, np.ndarray]]:
    everything = np.ones_like(clicked)
    return [("all", everything), ("clicked", clicked), ("unclicked", ~clicked)]


def versus_truth(pcvr: np.ndarray, truth: dict[str, np.ndarray]) -> dict[str, Any]:
    """Ranking and calibration of a pCVR on all / clicked / unclicked rows."""
    p = np.asarray(pcvr, dtype=np.float64)
    clicked = truth["clicked"]
    out: dict[str, Any] = {}
    for subset, mask in subsets(clicked):
        ps, ts, ys = p[mask], truth["pcvr"][mask], truth["counterfactual"][mask]
        order = np.argsort(ps, kind="stable")
        bins = np.array_split(order, min(ECE_BINS, max(ps.size, 1)))
        ece = sum(b.size * abs(ps[b].mean() - ts[b].mean()) for b in bins if b.size)
        ranked = ps.size > 2 and np.ptp(ps) > 0
        spearman = spearmanr(ps, ts).statistic if ranked else math.nan
        out[subset] = {
            "rows": int(mask.sum()), "auc_counterfactual": auc_score(ys, ps),
            "spearman": float(spearman), "mean_pred": float(ps.mean()),
            "mean_true": float(ts.mean()), "mean_ratio": float(ps.mean() / ts.mean()),
            "ece": float(ece / max(ps.size, 1)),
        }  # fmt: skip
    out["auc_clicked_observed"] = auc_score(truth["purchased"][clicked], p[clicked])
    return out


def train_architecture(
    arch: str, params: dict[str, Any], data: _simulated.FunnelData, cfg: TrainerConfig
) -> tuple[dict[str, Any], np.ndarray]:
    """(c): one architecture; its test metrics and implied pCVR."""
    torch.manual_seed(cfg.seed)
    model = build_model(arch, data.schema, config=_simulated.model_params(arch, params))
    weighting = params[arch].get("weighting") or {}
    strategy = build_strategy(
        weighting.get("name", "fixed"), model.task_names, weighting.get("params")
    )
    result = train(model, data.tables["train"], data.tables["valid"], strategy, cfg)
    test = data.tables["test"]
    metrics = evaluate_model(model, test, batch_size=cfg.eval_batch_size, device="cpu")
    probs = predict(model, test, cfg.eval_batch_size, "cpu")
    if model.conversion_output is not None:  # a latent pCVR (ESMM)
        pcvr = probs[model.conversion_output]
    else:
        pcvr = implied_cvr(probs["ctr"], probs["ctcvr"])
    row: dict[str, Any] = {"epochs_run": result.epochs_run}
    for task in ("ctr", "ctcvr"):
        t = metrics["tasks"][task]
        row |= {f"{task}_auc": t["auc"], f"{task}_oracle_auc": t.get("oracle_auc")}
        row[f"{task}_oracle_gap"] = t.get("oracle_gap")
    row["cvr_auc_clicked"] = metrics.get("funnel", {}).get("cvr_auc")
    return row, pcvr


def run_seed(k: int, opts: Options, params: dict[str, Any]) -> dict[str, Any]:
    """(a), (b) and (c) for seed ``k``, scored against the truth."""
    harness.say(f"seed {k}: simulating {opts.rows:,} impressions ...")
    data = _simulated.prepare(opts.rows, SIM_SEED + k, params=params)
    overrides: dict[str, Any] = {"seed": TRAIN_SEED + k}
    if opts.epochs is not None:
        overrides["epochs"] = opts.epochs
    cfg = _simulated.trainer_config(params, **overrides)
    test = data.tables["test"]
    labels, true_pcvr = test.labels_dict(), np.asarray(test.extras["true_pcvr"], float)
    draws = np.random.default_rng([SIM_SEED + k, 7]).random(true_pcvr.size)
    truth = {
        "pcvr": true_pcvr,
        "clicked": labels["ctr"] > 0.5,
        "purchased": labels["ctcvr"] > 0.5,
        "counterfactual": draws < true_pcvr,
    }
    naive, naive_info = train_naive(
        data, _simulated.model_params("esmm", params), cfg, opts.naive_epochs
    )
    scored = {"naive_cvr": versus_truth(naive.scores(test, cfg.eval_batch_size), truth)}
    models = {}
    for arch in opts.models:
        models[arch], pcvr = train_architecture(arch, params, data, cfg)
        scored[arch] = versus_truth(pcvr, truth)
        auc = scored[arch]["all"]["auc_counterfactual"]
        harness.say(f"  {arch}: {models[arch]}; pCVR AUC vs counterfactual {auc:.4f}")
    oracle = {
        s: {"auc_counterfactual": auc_score(truth["counterfactual"][m], true_pcvr[m])}
        for s, m in subsets(truth["clicked"])
    }
    return {"splits": data.describe(), "naive_cvr": naive_info, "pcvr_vs_truth": scored,
            "oracle_pcvr": oracle, "models": models}  # fmt: skip


def aggregate(records: list[Any]) -> Any:
    """Mean/std/n over seeds of every numeric leaf (same nesting)."""
    first = records[0]
    if isinstance(first, Mapping):
        return {k: aggregate([r.get(k) for r in records]) for k in first}
    return harness.mean_std(records) if isinstance(first, int | float) else first


def report(doc: dict[str, Any]) -> tuple[list[Table], dict[str, Any], list[str]]:
    s, cfg = doc["summary"], doc["config"]
    truth, oracle = s["pcvr_vs_truth"], s["oracle_pcvr"]
    bias = Table(
        f"pCVR against the truth on all test impressions (mean ± std over "
        f"{cfg['seeds']} seed(s)):",
        [("pCVR of", ""), ("AUC vs counterfactual, all", "±4"),
         ("AUC vs counterfactual, unclicked", "±4"), ("Spearman vs true pCVR", "±4"),
         ("AUC clicked rows (observed)", "±4"), ("mean pred / true, all", "±2"),
         ("clicked", "±2"), ("unclicked", "±2"), ("ECE vs true pCVR", "±4")],
    )  # fmt: skip
    order = ["naive_cvr", "esmm", *(k for k in truth if k not in ("naive_cvr", "esmm"))]
    for key in (k for k in order if k in truth):
        t = truth[key]
        source = "latent pCVR" if key == "esmm" else "pCTCVR / pCTR"
        label = NAIVE if key == "naive_cvr" else f"{key} ({source})"
        al, cl, un = t["all"], t["clicked"], t["unclicked"]
        bias.rows.append(
            [label, al["auc_counterfactual"], un["auc_counterfactual"],
             al["spearman"], t["auc_clicked_observed"], al["mean_ratio"],
             cl["mean_ratio"], un["mean_ratio"], al["ece"]]
        )  # fmt: skip
    bias.rows.append(
        ["oracle (true pCVR)", oracle["all"]["auc_counterfactual"],
         oracle["unclicked"]["auc_counterfactual"], 1.0, None, 1.0, 1.0, 1.0, 0.0]
    )  # fmt: skip
    archs = Table(
        "Every architecture on the test split (same trainer settings):",
        [("model", ""), ("CTR AUC", "±4"), ("oracle", "±4"), ("gap", "±4"),
         ("CTCVR AUC", "±4"), ("oracle", "±4"), ("gap", "±4"),
         ("CVR AUC (clicked)", "±4"), ("epochs", "±1")],
    )  # fmt: skip
    keys = ["ctr_auc", "ctr_oracle_auc", "ctr_oracle_gap", "ctcvr_auc"]
    keys += ["ctcvr_oracle_auc", "ctcvr_oracle_gap", "cvr_auc_clicked", "epochs_run"]
    for arch, m in s["models"].items():
        archs.rows.append([arch, *(m[k] for k in keys)])
    figures: dict[str, Any] = {}
    if "esmm" in truth:
        naive, esmm = truth["naive_cvr"], truth["esmm"]
        e_auc, n_auc = (t["all"]["auc_counterfactual"]["mean"] for t in (esmm, naive))
        diff = s["headline"]["esmm_minus_naive_auc_counterfactual_all"]
        better = "ranks better than" if e_auc > n_auc else "does not rank better than"
        spread = f"; per-seed difference {harness.fmt(diff, '±4')}"
        spread += f" over {diff['n']} seeds"
        figures = {"esmm_verb": better, "esmm_auc": e_auc, "naive_auc": n_auc,
                   "diff_text": "" if diff["std"] is None else spread}  # fmt: skip
        for name, t in (("naive", naive), ("esmm", esmm)):
            for c in ("clicked", "unclicked"):
                figures[f"{name}_ratio_{c}"] = t[c]["mean_ratio"]["mean"]
    others = [t for k, t in truth.items() if k not in ("naive_cvr", "esmm")]
    if others:
        aucs = [t["all"]["auc_counterfactual"]["mean"] for t in others]
        ratios = [t["unclicked"]["mean_ratio"]["mean"] for t in others]
        figures |= {"others_auc_min": min(aucs), "others_auc_max": max(aucs)}
        figures |= {"others_ratio_min": min(ratios), "others_ratio_max": max(ratios)}
    splits = ", ".join(
        f"{n} {v['rows']:,} rows / {v['clicks']:,} clicks / {v['purchases']:,} "
        "purchases"
        for n, v in doc["splits_first_seed"].items()
    )
    notes = [
        f"{cfg['rows']:,} simulated impressions per seed ({splits}, first seed); "
        f"trainer: batch {doc['trainer']['batch_size']}, lr {doc['trainer']['lr']}, at "
        f"most {doc['trainer']['epochs']} epochs with early stopping on the validation "
        "split. Naive CVR: ESMM's CVR branch (embedding + cvr_dims tower) trained "
        "alone on clicked training rows with the purchase label (at most "
        f"{cfg['naive_epochs']} epochs). Counterfactual labels: Bernoulli(true pCVR) "
        "for every test impression, rng seed [simulator seed, 7]. ECE: "
        f"{ECE_BINS} equal-frequency bins of the prediction, against the true pCVR.",
    ]
    return [bias, archs], figures, notes


def main(argv: list[str] | None = None) -> int:
    opts = harness.parse(Options, argv, __doc__ or "")
    result = harness.start(NAME, opts)
    params = _simulated.project_parameters()
    runs = [run_seed(k, opts, params) for k in range(opts.seeds)]
    diffs = [
        r["pcvr_vs_truth"]["esmm"]["all"]["auc_counterfactual"]
        - r["pcvr_vs_truth"]["naive_cvr"]["all"]["auc_counterfactual"]
        for r in runs
        if "esmm" in r["pcvr_vs_truth"]
    ]
    cfg = _simulated.trainer_config(params)
    keys = ("pcvr_vs_truth", "oracle_pcvr", "models", "naive_cvr")
    summary = {k: aggregate([r[k] for r in runs]) for k in keys}
    headline = {"esmm_minus_naive_auc_counterfactual_all": harness.mean_std(diffs)}
    summary["headline"] = headline
    result.results = {
        "trainer": {"batch_size": cfg.batch_size, "lr": cfg.optimizer.lr,
                    "epochs": opts.epochs or cfg.epochs},
        "splits_first_seed": runs[0]["splits"], "summary": summary,
    }  # fmt: skip
    return result.finish(report, opts.results_dir)


if __name__ == "__main__":
    sys.exit(main())
