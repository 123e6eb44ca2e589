"""Metrics: AUC vs sklearn, NaN-safety, funnel rows, GAUC, oracle gap, JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from mtl_reco.modeling.metrics import (
    auc_score,
    evaluate,
    flatten_metrics,
    grouped_auc,
    log_loss,
    oracle_from_extras,
)
from mtl_reco.schema import Funnel


def test_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    scores = np.round(rng.random(5000) + 0.3 * y, 2)  # many ties
    assert auc_score(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert auc_score(np.array([0, 1]), np.array([0.3, 0.3])) == 0.5
    assert auc_score(np.array([0, 0, 1]), np.array([0.1, 0.2, 0.9])) == 1.0
    assert auc_score(np.array([1, 0]), np.array([0.1, 0.9])) == 0.0


def test_log_loss_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 1000).astype(np.float32)
    p = rng.uniform(0.01, 0.99, 1000)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, y_proba=p), rel=1e-12)
    assert math.isfinite(log_loss(np.array([1.0, 0.0]), np.array([0.0, 1.0])))


@pytest.mark.parametrize("decimals", [None, 3, 1])
def test_auc_and_log_loss_match_sklearn_on_random_float32_data(decimals) -> None:
    """The vectorised versions kept for speed equal sklearn (ties included)."""
    rng = np.random.default_rng(7)
    n = 200_000
    y = rng.integers(0, 2, n)
    scores = (rng.random(n, dtype=np.float32) + np.float32(0.1) * y).astype(np.float32)
    probs = rng.uniform(1e-4, 1 - 1e-4, n).astype(np.float32)
    if decimals is not None:  # 1 decimal: ~11 distinct scores, huge tie groups
        scores = np.round(scores, decimals)
        probs = np.round(probs, decimals).clip(0.05, 0.95).astype(np.float32)
    assert len(np.unique(scores)) < n  # float32 alone already ties at this size
    assert abs(auc_score(y, scores) - roc_auc_score(y, scores)) <= 1e-9
    expected = sk_log_loss(y, y_proba=probs.astype(np.float64), labels=[0, 1])
    assert abs(log_loss(y, probs) - expected) <= 1e-9


def test_edge_cases_stay_nan_instead_of_raising() -> None:
    # sklearn raises on these; the metrics report NaN (and evaluate() a note)
    assert math.isnan(auc_score(np.ones(5), np.linspace(0, 1, 5)))
    assert math.isnan(auc_score(np.zeros(0), np.zeros(0)))
    assert math.isnan(auc_score(np.array([0, 1, 1]), np.array([0.1, np.nan, 0.3])))
    assert math.isnan(log_loss(np.zeros(0), np.zeros(0)))
    # one class is fine for LogLoss (sklearn needs labels=[0, 1] for it)
    expected = sk_log_loss(np.ones(3), y_proba=[0.9, 0.8, 0.7], labels=[0, 1])
    assert log_loss(np.ones(3), np.array([0.9, 0.8, 0.7])) == pytest.approx(expected)


def test_one_class_gives_nan_and_a_note() -> None:
    labels = {"ctr": np.array([0, 1, 0, 1]), "ctcvr": np.zeros(4)}
    scores = {"ctr": np.array([0.1, 0.8, 0.3, 0.6]), "ctcvr": np.full(4, 0.1)}
    result = evaluate(labels, scores)
    assert result["tasks"]["ctr"]["auc"] == 1.0
    assert math.isnan(result["tasks"]["ctcvr"]["auc"])
    assert math.isfinite(result["tasks"]["ctcvr"]["logloss"])
    assert result["notes"] == ["ctcvr: only one class (0) in 4 rows: AUC is NaN"]
    assert result["mean"]["auc"] == 1.0  # NaN tasks are left out of the mean
    empty = evaluate({"a": np.zeros(0)}, {"a": np.zeros(0)})
    assert math.isnan(empty["tasks"]["a"]["auc"])
    assert empty["notes"] == ["a: no rows: AUC is NaN"]


def _funnel_data(n: int = 4000, seed: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pctr = rng.uniform(0.05, 0.6, n)
    pcvr = rng.uniform(0.05, 0.6, n)
    click = (rng.random(n) < pctr).astype(np.float32)
    ctcvr = click * (rng.random(n) < pcvr)
    noise = rng.normal(0, 0.3, n)
    return {
        "click": click,
        "ctcvr": ctcvr,
        "pctr": pctr,
        "pcvr": pcvr,
        "p_ctr_model": np.clip(pctr + rng.normal(0, 0.1, n), 0.01, 0.99),
        "p_cvr_model": np.clip(pcvr + noise, 0.01, 0.99),
    }


def test_cvr_on_clicked_rows_and_ctcvr_on_all_rows() -> None:
    d = _funnel_data()
    funnel = Funnel(click="ctr", conversion="ctcvr")
    labels = {"ctr": d["click"], "ctcvr": d["ctcvr"]}
    p_ctcvr = d["p_ctr_model"] * d["p_cvr_model"]
    scores = {"ctr": d["p_ctr_model"], "ctcvr": p_ctcvr}
    clicked = d["click"] == 1

    latent = evaluate(labels, scores, funnel=funnel, cvr_scores=d["p_cvr_model"])
    f = latent["funnel"]
    assert f["cvr_rows"] == int(clicked.sum())
    assert f["cvr_score"] == "latent"
    assert f["cvr_auc"] == pytest.approx(
        roc_auc_score(d["ctcvr"][clicked], d["p_cvr_model"][clicked])
    )
    assert f["ctcvr_auc"] == pytest.approx(roc_auc_score(d["ctcvr"], p_ctcvr))
    # not the AUC of pCVR over all impressions
    assert f["cvr_auc"] != pytest.approx(roc_auc_score(d["ctcvr"], d["p_cvr_model"]))

    ratio = evaluate(labels, scores, funnel=funnel)["funnel"]
    assert ratio["cvr_score"] == "ratio"
    expected = roc_auc_score(d["ctcvr"][clicked], (p_ctcvr / d["p_ctr_model"])[clicked])
    assert ratio["cvr_auc"] == pytest.approx(expected)


def test_gauc_hand_example() -> None:
    groups = np.array(["u1", "u1", "u1", "u2", "u2", "u3", "u3"])
    labels = np.array([1, 0, 0, 1, 0, 0, 0])
    scores = np.array([0.9, 0.5, 0.95, 0.2, 0.1, 0.3, 0.4])
    # u1: the positive beats 1 of 2 negatives -> 0.5; u2 -> 1.0; u3 one class
    gauc, used = grouped_auc(labels, scores, groups)
    assert used == 2
    assert gauc == pytest.approx((3 * 0.5 + 2 * 1.0) / 5)
    # ties inside a group count one half
    gauc_tie, _ = grouped_auc(np.array([1, 0]), np.array([0.3, 0.3]), np.array([7, 7]))
    assert gauc_tie == 0.5


def test_gauc_matches_per_group_sklearn() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    groups = rng.integers(0, 40, n)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.random(n) + 0.2 * labels, 1)
    num = den = 0.0
    for g in np.unique(groups):
        m = groups == g
        if 0 < labels[m].sum() < m.sum():
            num += m.sum() * roc_auc_score(labels[m], scores[m])
            den += m.sum()
    gauc, _ = grouped_auc(labels, scores, groups)
    assert gauc == pytest.approx(num / den, abs=1e-12)
    result = evaluate({"ctr": labels}, {"ctr": scores}, groups=groups)
    assert result["tasks"]["ctr"]["gauc"] == pytest.approx(num / den)
    assert result["mean"]["gauc"] == pytest.approx(num / den)


def test_oracle_gap() -> None:
    d = _funnel_data(seed=4)
    funnel = Funnel(click="ctr", conversion="ctcvr")
    extras = {
        "true_pctr": d["pctr"],
        "true_pcvr": d["pcvr"],
        "true_pctcvr": d["pctr"] * d["pcvr"],
    }
    oracle = oracle_from_extras(extras, ["ctr", "ctcvr"], funnel)
    assert set(oracle) == {"ctr", "ctcvr", "cvr"}
    labels = {"ctr": d["click"], "ctcvr": d["ctcvr"]}
    scores = {"ctr": d["p_ctr_model"], "ctcvr": d["p_ctr_model"] * d["p_cvr_model"]}
    result = evaluate(
        labels, scores, funnel=funnel, cvr_scores=d["p_cvr_model"], oracle=oracle
    )
    ctr = result["tasks"]["ctr"]
    assert ctr["oracle_auc"] == pytest.approx(roc_auc_score(d["click"], d["pctr"]))
    assert ctr["oracle_gap"] == pytest.approx(ctr["oracle_auc"] - ctr["auc"])
    assert ctr["oracle_gap"] > 0  # the noisy model is worse than the truth
    clicked = d["click"] == 1
    f = result["funnel"]
    assert f["cvr_oracle_auc"] == pytest.approx(
        roc_auc_score(d["ctcvr"][clicked], d["pcvr"][clicked])
    )
    assert f["cvr_oracle_gap"] == pytest.approx(f["cvr_oracle_auc"] - f["cvr_auc"])
    # task names other than ctr/ctcvr map through the funnel
    renamed = oracle_from_extras(extras, ["click", "buy"], Funnel("click", "buy"))
    assert set(renamed) == {"click", "buy", "cvr"}


def _walk(value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str)
            _walk(v)
    elif isinstance(value, list):
        for v in value:
            _walk(v)
    else:
        assert type(value) in (int, float, str, bool), type(value)


def test_result_is_plain_json_and_flattens() -> None:
    d = _funnel_data(500, seed=5)
    labels = {"ctr": d["click"], "ctcvr": d["ctcvr"], "value": d["pctr"]}
    scores = {
        "ctr": d["p_ctr_model"].astype(np.float32),
        "ctcvr": (d["p_ctr_model"] * d["p_cvr_model"]).astype(np.float32),
        "value": d["pctr"] + 0.5,
        "cvr": d["p_cvr_model"],
    }
    result = evaluate(
        labels,
        scores,
        task_types={"value": "regression"},
        funnel=Funnel("ctr", "ctcvr"),
        groups=np.arange(500) % 7,
    )
    _walk(result)
    json.loads(json.dumps(result))
    assert result["tasks"]["value"] == {
        "type": "regression",
        "n": 500,
        "mse": pytest.approx(0.25),
        "mae": pytest.approx(0.5),
    }
    flat = flatten_metrics({**result, "loss": 1.5})
    for key in (
        "ctr.auc",
        "ctr.logloss",
        "ctr.gauc",
        "ctcvr.auc",
        "value.mse",
        "mean.auc",
        "mean.mse",
        "funnel.cvr_auc",
        "funnel.ctcvr_auc",
        "loss",
    ):
        assert key in flat, key
    assert flat["ctr.auc"] == result["tasks"]["ctr"]["auc"]
    assert "ctr.n" not in flat
