"""AUC and LogLoss: the vectorised numpy versions vs scikit-learn, at 1 M and 10 M rows.

Decides which implementation :mod:`mtl_reco.modeling.metrics` uses: a metric
keeps its own vectorised code only where ``sklearn.metrics`` is measurably
slower (more than ``--keep-if-slower``, 1.5x by default) on 10 M rows.

For every size (``--sizes``, default 1 000 000 and 10 000 000 rows) and data
kind, the same arrays (random 0/1 labels as int64, float32 scores) are fed to

* AUC: ``numpy`` = the one-sort Mann-Whitney rank statistic with tied scores
  sharing their average rank (the code :func:`mtl_reco.modeling.metrics.auc_score`
  had before this benchmark, copied below as :func:`numpy_auc`) vs
  ``sklearn.metrics.roc_auc_score``;
* LogLoss: ``numpy`` = the float64 mean binary cross-entropy with
  probabilities clipped to ``[1e-15, 1 - 1e-15]`` (:func:`numpy_log_loss`) vs
  ``sklearn.metrics.log_loss(y, y_proba=p, labels=[0, 1])`` with ``p`` cast
  to float64 first (on float32 input sklearn computes in float32, ~1e-8 off);
* ``mtl_reco``: the project's public :func:`~mtl_reco.modeling.metrics.auc_score`
  and :func:`~mtl_reco.modeling.metrics.log_loss` as they are now (their
  guards for one class, NaN and empty input included).

Data kinds: ``continuous`` (uniform float32 scores: float32 has 2**24 values
in [0, 1), so 10 M rows already hold ties) and ``ties`` (scores rounded to
3 decimals: about 1000 distinct values). Labels are independent of the
scores for LogLoss; for AUC the positives get a small score shift so the AUC
is not 0.5. Each function runs ``--repeats`` times, interleaved (round
robin), after one untimed call; the best and the median time count. Every
pair must agree to ``--tolerance`` (1e-9, absolute); the script exits 1 when
one does not.

    python benchmarks/metrics_speed.py                 # ~2 min on 2 cores
    python benchmarks/metrics_speed.py --quick         # smoke run (seconds)

Output: ``benchmarks/results/metrics_speed.json`` (``--quick``:
``metrics_speed_quick.json``; ``--results-dir`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

import _common
from mtl_reco.modeling import metrics

_LOGLOSS_EPS = 1e-15


def numpy_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Rank-based AUC (ties = average rank); one stable argsort."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos = int(y.sum())
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], s.size]
    ranks = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    rank_sum = float(ranks[y[order]].sum())
    n_neg = y.size - n_pos
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def numpy_log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy in float64, probabilities clipped."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(
        np.asarray(probs, dtype=np.float64).reshape(-1),
        _LOGLOSS_EPS,
        1.0 - _LOGLOSS_EPS,
    )
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def sklearn_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores))


def sklearn_log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    # float64 like numpy_log_loss: on float32 input sklearn computes in float32
    # (differs from the float64 result by ~1e-8 at 20 000 rows)
    p = np.asarray(probs, dtype=np.float64)
    return float(sk_log_loss(labels, y_proba=p, labels=[0, 1]))


AUC: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "numpy": numpy_auc,
    "sklearn": sklearn_auc,
    "mtl_reco": metrics.auc_score,
}
LOGLOSS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "numpy": numpy_log_loss,
    "sklearn": sklearn_log_loss,
    "mtl_reco": metrics.log_loss,
}


def make_data(n: int, kind: str, seed: int) -> dict[str, np.ndarray]:
    """Labels (int64 0/1), AUC scores and LogLoss probabilities (float32)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = (rng.random(n, dtype=np.float32) + np.float32(0.1) * labels).astype(
        np.float32
    )
    probs = rng.uniform(1e-4, 1 - 1e-4, n).astype(np.float32)
    if kind == "ties":
        scores = np.round(scores, 3).astype(np.float32)
        probs = np.round(probs, 3).clip(0.001, 0.999).astype(np.float32)
    return {"labels": labels, "scores": scores, "probs": probs}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def time_functions(
    functions: dict[str, Callable[[np.ndarray, np.ndarray], float]],
    labels: np.ndarray,
    values: np.ndarray,
    repeats: int,
) -> dict[str, dict[str, Any]]:
    """Best and median seconds per function, interleaved round robin."""
    results = {name: fn(labels, values) for name, fn in functions.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn(labels, values)
            times[name].append(time.perf_counter() - start)
    return {
        name: {
            "value": results[name],
            "best_s": min(times[name]),
            "median_s": statistics.median(times[name]),
        }
        for name in functions
    }


def run_case(n: int, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    data = make_data(n, kind, args.seed)
    case: dict[str, Any] = {"n_rows": n, "kind": kind}
    for metric, functions, values in (
        ("auc", AUC, data["scores"]),
        ("logloss", LOGLOSS, data["probs"]),
    ):
        timed = time_functions(functions, data["labels"], values, args.repeats)
        reference = timed["numpy"]["value"]
        diffs = {name: abs(entry["value"] - reference) for name, entry in timed.items()}
        entry = {
            "functions": timed,
            "max_abs_diff": max(diffs.values()),
            "agree": max(diffs.values()) <= args.tolerance,
            "sklearn_over_numpy_best": timed["sklearn"]["best_s"]
            / timed["numpy"]["best_s"],
            "sklearn_over_numpy_median": timed["sklearn"]["median_s"]
            / timed["numpy"]["median_s"],
        }
        case[metric] = entry
        _say(
            f"  {n:>11,} rows {kind:<10} {metric:<7}: numpy "
            f"{timed['numpy']['best_s']:.3f} s, sklearn "
            f"{timed['sklearn']['best_s']:.3f} s "
            f"({entry['sklearn_over_numpy_best']:.2f}x), mtl_reco "
            f"{timed['mtl_reco']['best_s']:.3f} s; max |diff| "
            f"{entry['max_abs_diff']:.1e}"
        )
    return case


def decide(cases: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Per metric: ``sklearn`` unless it is > ``threshold`` slower at the largest size.

    "Slower" must hold for every data kind (the smallest ratio decides).
    """
    largest = max(c["n_rows"] for c in cases)
    out: dict[str, Any] = {"threshold": threshold, "n_rows": largest}
    for metric in ("auc", "logloss"):
        ratios = [
            c[metric]["sklearn_over_numpy_best"]
            for c in cases
            if c["n_rows"] == largest
        ]
        smallest = min(ratios)
        out[metric] = {
            "sklearn_over_numpy_best_min_over_kinds": smallest,
            "use": "numpy" if smallest > threshold else "sklearn",
        }
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--tolerance", type=float, default=1e-9)
    parser.add_argument("--keep-if-slower", type=float, default=1.5)
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [20_000] if args.quick else [1_000_000, 10_000_000]
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    machine = _common.machine_info()
    _say(f"metrics_speed: sizes {args.sizes}, {args.repeats} repeats")
    cases = [
        run_case(n, kind, args) for n in args.sizes for kind in ("continuous", "ties")
    ]
    payload = {
        "quick": args.quick,
        "machine": machine,
        "load_average_after": _common.load_average(),
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "repeats": args.repeats,
        "seed": args.seed,
        "tolerance": args.tolerance,
        "cases": cases,
        "all_agree": all(c[m]["agree"] for c in cases for m in ("auc", "logloss")),
        "decision": decide(cases, args.keep_if_slower),
        "peak_rss_mb": _common.peak_rss_mb(),
    }
    name = "metrics_speed_quick" if args.quick else "metrics_speed"
    path = _common.write_result(name, payload, args.results_dir)
    _say(f"decision: {payload['decision']}")
    _say(f"wrote {path}")
    if not payload["all_agree"]:
        _say(f"error: a pair of implementations differs by more than {args.tolerance}")
        sys.exit(1)
    return path


if __name__ == "__main__":
    main()
