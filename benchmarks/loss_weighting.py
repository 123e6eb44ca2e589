"""Loss weighting on real data: MMoE on Census-Income with every strategy.

mtl_reco's MMoE (8 experts [16], towers [8]) on the Census split, encoding
and budget of ``census_quality.py`` (``_census.py``), trained with each
loss-weighting strategy and several seeds: test AUC per task (mean ± std),
the task weights when training ended, seconds per epoch (also relative to
``fixed``). Torch-RecHub 0.9.0's own adaptive methods
(``MTLTrainer(adaptive_params={"method": ...})``, same MMoE and budget) run
as they are, never patched: their metrics or the error they raise.

    python benchmarks/loss_weighting.py           # 6 strategies + Torch-RecHub's 3
    python benchmarks/loss_weighting.py --strategies fixed,gradnorm,pcgrad --seeds 5
    python benchmarks/loss_weighting.py --libraries mtl_reco
    python benchmarks/loss_weighting.py --quick         # CI smoke: 4,000 rows, 1 epoch

Writes ``results/loss_weighting.json`` (``--quick``: ``loss_weighting_quick.json``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial
from typing import Any

import _census
import harness
from _census import LIBRARIES, TASKS
from harness import Table, option

NAME = "loss_weighting"
MODEL = "mmoe"
STRATEGIES = ("fixed", "uwl", "gradnorm", "metabalance", "dwa", "pcgrad")
RECHUB_STRATEGIES = ("uwl", "gradnorm", "metabalance")
#: mtl_reco's strategy settings.
PARAMS: dict[str, dict[str, Any]] = {
    "fixed": {"weights": dict.fromkeys(TASKS, 1.0)},
    "uwl": {"init_log_var": 0.0},
    "gradnorm": {"alpha": 1.5},
    "metabalance": {"main_task": "income", "relax_factor": 0.7, "beta": 0.9},
    "dwa": {"temperature": 2.0},
    "pcgrad": {"seed": None},  # None: the run's seed
}
NOTES = {
    "fixed": "sum of the task losses (weights 1, 1)",
    "uwl": "Kendall et al. 2018: sum exp(-s_i) L_i + s_i / 2, learnable s_i, "
    "no clamp; weight = exp(-s_i)",
    "gradnorm": "Chen et al. 2018: weights balancing gradient norms on the last "
    "shared layer (the experts' last layer), renormalised to sum to 2",
    "metabalance": "He et al. 2022: auxiliary (marital) gradients on the shared "
    "parameters rescaled towards the main (income) task's norm; weight = "
    "effective scale on the shared parameters",
    "dwa": "Liu et al. 2019: weights from the ratio of the last two epochs' "
    "losses (equal for the first two epochs), sum 2",
    "pcgrad": "Yu et al. 2020: conflicting shared-gradient components projected "
    "away; weights 1",
}
RECHUB_NOTES = {
    "uwl": "its loss per task is 2 * L_i * exp(-clamp(w_i, min=0)) + w_i (w_i "
    "starts at 0): twice mtl_reco's UWL objective, but each weight exp(-w_i) is "
    "capped at 1 by the clamp; recorded weight = exp(-max(w_i, 0)). Its optimum "
    "w_i = ln(2 L_i) is negative for a loss below 0.5 (both Census tasks after "
    "the first steps): there the clamped term gives w_i no gradient, the + w_i "
    "term keeps pushing it down, and the weight stays at 1",
    "gradnorm": "adaptive_params={'method': 'gradnorm'} (its alpha default 0.16)",
    "metabalance": "adaptive_params={'method': 'metabalance'} (its MetaBalance "
    "optimizer, relax 0.7, beta 0.9, task 0 = income as the main task)",
}


@dataclass
class Options(_census.Options):
    strategies: tuple[str, ...] = option(STRATEGIES, "", choices=STRATEGIES)
    libraries: tuple[str, ...] = option(LIBRARIES, "", choices=LIBRARIES)
    rechub_strategies: tuple[str, ...] = option(
        RECHUB_STRATEGIES, "Torch-RecHub's methods to try", choices=RECHUB_STRATEGIES
    )


def report(doc: dict[str, Any]) -> tuple[list[Table], dict[str, Any], list[str]]:
    """A table per library and of Torch-RecHub's outcomes; figures; notes."""
    index = {(s["strategy"], s["library"], s["task"]): s for s in doc["summary"]}
    fixed = index.get(("fixed", "mtl_reco", TASKS[0]), {}).get("seconds_per_epoch_mean")
    tables, figures = [], {}
    for lib, title in (("mtl_reco", "mtl_reco"), ("torch_rechub", "Torch-RecHub")):
        table = Table(
            f"{title}, test AUC (mean ± std over seeds):",
            [("strategy", ""), *[(f"{t} AUC", "±4n") for t in TASKS],
             *[(f"{t} final weight", "±3") for t in TASKS],
             ("s/epoch", ".2f"), ("time vs fixed", "{:.2f}x")],
        )  # fmt: skip
        for strategy in dict.fromkeys(s for s, lb, _ in index if lb == lib):
            rows = [index[(strategy, lib, t)] for t in TASKS]
            seconds = rows[0]["seconds_per_epoch_mean"]
            vs_fixed = seconds / fixed if fixed and lib == "mtl_reco" else None
            table.rows.append(
                [strategy, *[r["test_auc"] for r in rows],
                 *[r["weight_final"] for r in rows], seconds, vs_fixed]
            )  # fmt: skip
        tables += [table] if table.rows else []
    outcome = Table(
        "Torch-RecHub's own adaptive methods:",
        [("strategy", ""), ("status", ""), ("errors", ""), ("note", "")],
    )
    ran = [s for s, lb, _ in index if lb == "torch_rechub"]
    for strategy in doc["config"]["rechub_strategies"]:
        errors = sorted(
            {e["error"] for e in doc["errors"] if e["strategy"] == strategy}
        )
        if errors or strategy in ran:
            status = "error" if errors else "ok"
            text = "; ".join(errors) or None
            outcome.rows.append([strategy, status, text, RECHUB_NOTES[strategy]])
    for task in TASKS:
        scored = sorted(
            (s["test_auc"]["mean"], strategy)
            for (strategy, lib, t), s in index.items()
            if lib == "mtl_reco" and t == task and s["test_auc"]["mean"] is not None
        )
        if len(scored) > 1:
            (lo, lo_by), (hi, hi_by) = scored[0], scored[-1]
            figures |= {f"{task}_auc_min": lo, f"{task}_auc_min_by": lo_by}
            figures |= {f"{task}_auc_max": hi, f"{task}_auc_max_by": hi_by}
    notes = [
        "\n".join(f"- `{s}`: {NOTES[s]}" for s in doc["config"]["strategies"]),
        _census.budget_note(doc["config"], doc["data"]["split"]["rows"]),
    ]
    return tables + ([outcome] if outcome.rows else []), figures, notes


def main(argv: list[str] | None = None) -> int:
    opts = harness.parse(Options, argv, __doc__ or "")
    plan = []
    if "mtl_reco" in opts.libraries:
        for s in opts.strategies:
            kw = {"opts": opts, "weighting": s, "weighting_params": PARAMS[s]}
            plan.append((s, "mtl_reco", partial(_census.run_ours, MODEL, **kw)))
    if "torch_rechub" in opts.libraries:
        for s in opts.rechub_strategies:
            run = partial(_census.run_rechub, MODEL, opts=opts, adaptive=s)
            plan.append((s, "torch_rechub", run))
    return _census.drive(
        NAME, opts, "strategy", plan, report, model=MODEL,
        model_params=_census.MODEL_PARAMS[MODEL], strategy_params=PARAMS,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
