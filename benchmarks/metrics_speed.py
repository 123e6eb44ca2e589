"""AUC and LogLoss: the vectorised numpy versions vs scikit-learn, at 1 M and 10 M rows.

Decides which implementation ``mtl_reco.modeling.metrics`` uses: a metric
keeps its own numpy code only where ``sklearn.metrics`` is slower by more
than ``--keep-if-slower`` (1.5x) on the largest size, for every data kind.
The same arrays (0/1 int64 labels, float32 scores) go to ``numpy`` (the
one-sort Mann-Whitney AUC with tied scores sharing their average rank; the
float64 mean BCE with probabilities clipped to [1e-15, 1 - 1e-15]),
``sklearn`` (``roc_auc_score``; ``log_loss`` on float64 probabilities) and
``mtl_reco`` (the project's public functions). Kinds: ``continuous``
(uniform float32 scores) and ``ties`` (rounded to 3 decimals). Each runs
``--repeats`` times round robin after one untimed call; best and median
count; every pair must agree to ``--tolerance`` (exit 1 otherwise).

    python benchmarks/metrics_speed.py                 # ~2 min on 2 cores
    python benchmarks/metrics_speed.py --quick         # smoke run (seconds)

Writes ``results/metrics_speed.json`` (``--quick``: ``metrics_speed_quick.json``).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
from sklearn.metrics import log_loss, roc_auc_score

import harness
from harness import Table, option
from mtl_reco.modeling import metrics

NAME = "metrics_speed"
Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass
class Options(harness.Config):
    sizes: tuple[int, ...] = option((1_000_000, 10_000_000), "rows", quick=(20_000,))
    repeats: int = option(5, "timed calls per function", quick=2)
    seed: int = option(2026, "data seed")
    tolerance: float = option(1e-9, "largest absolute difference allowed")
    keep_if_slower: float = option(1.5, "keep numpy when sklearn is this much slower")


def numpy_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Rank-based AUC (ties share their average rank); one stable argsort."""
    y = np.asarray(labels).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(s, kind="stable")
    ranked = s[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    ends = np.r_[starts[1:], s.size]
    ranks = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    n_pos = int(y.sum())
    rank_sum = float(ranks[y[order]].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * (y.size - n_pos))


def numpy_log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy in float64, probabilities clipped."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


FUNCTIONS: dict[str, dict[str, Metric]] = {
    "auc": {
        "numpy": numpy_auc,
        "sklearn": lambda y, s: float(roc_auc_score(y, s)),
        "mtl_reco": metrics.auc_score,
    },
    "logloss": {
        "numpy": numpy_log_loss,
        # float64 like numpy's: on float32 input sklearn computes in float32
        "sklearn": lambda y, p: float(log_loss(y, p.astype(np.float64), labels=[0, 1])),
        "mtl_reco": metrics.log_loss,
    },
}


def make_data(n: int, kind: str, seed: int) -> dict[str, np.ndarray]:
    """Labels, AUC scores (positives shifted up) and LogLoss probabilities."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = (rng.random(n, dtype=np.float32) + np.float32(0.1) * labels).astype(
        np.float32
    )
    probs = rng.uniform(1e-4, 1 - 1e-4, n).astype(np.float32)
    if kind == "ties":
        scores = np.round(scores, 3).astype(np.float32)
        probs = np.round(probs, 3).clip(0.001, 0.999).astype(np.float32)
    return {"labels": labels, "auc": scores, "logloss": probs}


def run_case(n: int, kind: str, opts: Options) -> dict[str, Any]:
    data = make_data(n, kind, opts.seed)
    case: dict[str, Any] = {"n_rows": n, "kind": kind}
    for metric, functions in FUNCTIONS.items():
        args = (data["labels"], data[metric])
        values = {name: fn(*args) for name, fn in functions.items()}  # warm-up
        times: dict[str, list[float]] = {name: [] for name in functions}
        for _ in range(opts.repeats):
            for name, fn in functions.items():
                t0 = time.perf_counter()
                fn(*args)
                times[name].append(time.perf_counter() - t0)
        best = {k: min(v) for k, v in times.items()}
        median = {k: statistics.median(v) for k, v in times.items()}
        diff = max(abs(v - values["numpy"]) for v in values.values())
        case[metric] = {
            "values": values,
            "best_s": best,
            "median_s": median,
            "max_abs_diff": diff,
            "agree": diff <= opts.tolerance,
            "sklearn_over_numpy_best": best["sklearn"] / best["numpy"],
            "sklearn_over_numpy_median": median["sklearn"] / median["numpy"],
        }
        harness.say(
            f"  {n:>11,} rows {kind:<10} {metric:<7}: {best}, |diff| {diff:.1e}"
        )
    return case


def report(doc: dict[str, Any]) -> tuple[list[Table], dict[str, Any], list[str]]:
    table = Table(
        "sklearn time / numpy time (best and median of the repetitions):",
        [("n_rows", ",.0f"), ("kind", "")]
        + [(f"{m} {k}", f) for m in ("auc", "logloss") for k, f in (
            ("max_abs_diff", ".1e"), ("agree", ""), ("sklearn/numpy best", ".4f"),
            ("sklearn/numpy median", ".4f"))],
    )  # fmt: skip
    for c in doc["cases"]:
        row = [c["n_rows"], c["kind"]]
        for m in ("auc", "logloss"):
            e = c[m]
            row += [e["max_abs_diff"], e["agree"]]
            row += [e["sklearn_over_numpy_best"], e["sklearn_over_numpy_median"]]
        table.rows.append(row)
    d = doc["decision"]
    note = (
        f"sklearn {doc['sklearn']}, numpy {doc['numpy']}; {doc['repeats']} repeats, "
        f"seed {doc['seed']}, tolerance {doc['tolerance']:g}; every pair agrees: "
        f"{doc['all_agree']}. Decision at {d['n_rows']:,} rows (threshold "
        f"{d['threshold']}x): AUC uses {d['auc']}, LogLoss uses {d['logloss']}."
    )
    return [table], {}, [note]


def main(argv: list[str] | None = None) -> int:
    opts = harness.parse(Options, argv, __doc__ or "")
    result = harness.start(NAME, opts)
    cases = [run_case(n, k, opts) for n in opts.sizes for k in ("continuous", "ties")]
    largest = [c for c in cases if c["n_rows"] == max(opts.sizes)]
    decision: dict[str, Any] = {"threshold": opts.keep_if_slower}
    decision["n_rows"] = max(opts.sizes)
    for m in FUNCTIONS:
        slowest = min(c[m]["sklearn_over_numpy_best"] for c in largest)
        decision[m] = "numpy" if slowest > opts.keep_if_slower else "sklearn"
    doc = {
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "repeats": opts.repeats,
        "seed": opts.seed,
        "tolerance": opts.tolerance,
        "all_agree": all(c[m]["agree"] for c in cases for m in FUNCTIONS),
        "decision": decision,
        "cases": cases,
    }
    result.results = doc
    result.tables, result.figures, result.notes = report(doc)
    result.write(opts.results_dir)
    if not doc["all_agree"]:
        print(f"error: a pair differs by more than {opts.tolerance}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
