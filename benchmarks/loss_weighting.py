"""Loss weighting on real data: MMoE on Census-Income with every strategy.

mtl_reco's MMoE (8 experts [16], towers [8], embedding 4) on the same
Census-Income split, encoding and budget as ``census_quality.py`` (batch
1024, Adam lr 1e-3 / weight decay 1e-4, at most 20 epochs, early stopping
on the validation split with patience 3), trained with each loss-weighting
strategy - fixed, uwl, gradnorm, metabalance, dwa, pcgrad - and several
seeds. Recorded per run: test AUC and LogLoss per task, the task weights at
the end of training and during the scored (best) epoch, the weights of every
epoch, and the training time per epoch (validation excluded).

Strategy settings (:data:`STRATEGY_PARAMS`): fixed weights 1/1 (the sum of
the task losses: the scale the adaptive strategies start from); UWL
log-variances start at 0 (weight 1), no clamp; GradNorm alpha 1.5 on the
experts' last layer; MetaBalance with ``income`` as the main task (relax
factor 0.7, beta 0.9); DWA temperature 2; PCGrad with a seeded projection
order.

For reference, Torch-RecHub 0.9.0's own adaptive methods
(``MTLTrainer(adaptive_params={"method": ...})`` with its MMOE, same budget)
are run as they are, never patched: ``uwl`` (its loss is
``2 L_i exp(-clamp(w_i, 0)) + w_i``, i.e. twice mtl_reco's UWL objective with
each weight capped at 1), ``gradnorm`` and ``metabalance``. Their outcome -
metrics, or the error they raise - is recorded under ``rechub_outcomes``.

    python benchmarks/loss_weighting.py                 # full (see README)
    python benchmarks/loss_weighting.py --quick         # CI smoke, seconds
    python benchmarks/loss_weighting.py --strategies fixed,gradnorm --seeds 5
    python benchmarks/loss_weighting.py --libraries mtl_reco

Output: ``benchmarks/results/loss_weighting.json`` (``--quick``:
``loss_weighting_quick.json``); layout in :data:`LAYOUT` and the README.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

import _common
import census_quality as cq

NAME = "loss_weighting"
LAYOUT_VERSION = 1
MODEL = "mmoe"
STRATEGIES = ("fixed", "uwl", "gradnorm", "metabalance", "dwa", "pcgrad")
RECHUB_STRATEGIES = ("uwl", "gradnorm", "metabalance")
LIBRARIES = cq.LIBRARIES
TASKS = cq.TASKS

#: mtl_reco strategy hyperparameters (PCGrad's seed is the run's seed).
STRATEGY_PARAMS: dict[str, dict[str, Any]] = {
    "fixed": {"weights": dict.fromkeys(TASKS, 1.0)},
    "uwl": {"init_log_var": 0.0},
    "gradnorm": {"alpha": 1.5},
    "metabalance": {"main_task": "income", "relax_factor": 0.7, "beta": 0.9},
    "dwa": {"temperature": 2.0},
    "pcgrad": {},
}
STRATEGY_NOTES = {
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
    "capped at 1 by the clamp; recorded weight = exp(-max(w_i, 0)), raw w_i "
    "under raw_loss_weight_parameters. Its optimum w_i = ln(2 L_i) is negative "
    "for a loss below 0.5 (both Census tasks after the first steps): there the "
    "clamped term gives w_i no gradient, the + w_i term keeps pushing it down, "
    "and the weight stays at 1",
    "gradnorm": "adaptive_params={'method': 'gradnorm'} (its alpha default 0.16)",
    "metabalance": "adaptive_params={'method': 'metabalance'} (its MetaBalance "
    "optimizer, relax 0.7, beta 0.9, task 0 = income as the main task)",
}

LAYOUT = {
    "rows": "one row per (strategy, library, seed, task) of a run that finished: "
    "test_auc, test_logloss, valid_auc, weight_final (task weight when training "
    "ended, the strategy's state), weight_last_epoch (mean weight over the "
    "steps of the last epoch), weight_scored_epoch (same, epoch whose model was "
    "scored), best_epoch, scored_epoch, epochs_run, stopped_early, "
    "seconds_per_epoch (median over epochs, training only), fit_seconds",
    "runs": "one entry per (strategy, library, seed): status ok|error, error, "
    "weights_final, weights_per_epoch, valid_history, epoch_seconds",
    "summary": "one row per (strategy, library, task): n_seeds, test_auc_mean, "
    "test_auc_std (sample std, ddof=1; null for one seed), test_auc_min/max, "
    "weight_final_mean, weight_final_std, seconds_per_epoch_mean, "
    "time_vs_fixed (seconds per epoch / mtl_reco fixed's)",
    "rechub_outcomes": "one row per Torch-RecHub strategy: status ok|error "
    "(with the error message of each seed), note",
    "errors": "mtl_reco runs that raised (none expected)",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cq.add_common_args(parser)
    parser.add_argument(
        "--strategies", default=",".join(STRATEGIES), help=",".join(STRATEGIES)
    )
    parser.add_argument(
        "--libraries",
        default=",".join(LIBRARIES),
        help="mtl_reco,torch_rechub (Torch-RecHub: --rechub-strategies only)",
    )
    parser.add_argument(
        "--rechub-strategies",
        default=",".join(RECHUB_STRATEGIES),
        help="Torch-RecHub's adaptive methods to try: " + ",".join(RECHUB_STRATEGIES),
    )
    args = parser.parse_args(argv)
    args.strategies = cq._csv(args.strategies, STRATEGIES, "strategy", parser)
    args.libraries = cq._csv(args.libraries, LIBRARIES, "library", parser)
    args.rechub_strategies = cq._csv(
        args.rechub_strategies, RECHUB_STRATEGIES, "Torch-RecHub strategy", parser
    )
    if "torch_rechub" not in args.libraries:
        args.rechub_strategies = []
    cq.finish_common_args(args, NAME)
    return args


def strategy_params(strategy: str, seed: int) -> dict[str, Any]:
    params = dict(STRATEGY_PARAMS[strategy])
    if strategy == "pcgrad":
        params["seed"] = seed
    return params


def weight_rows(
    run: Mapping[str, Any], keys: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``census_quality``'s per-task rows plus the task weights."""
    rows = cq.run_rows(run, keys)
    final = run.get("weights_final") or {}
    per_epoch = run.get("weights_per_epoch") or []
    scored = run.get("scored_epoch")
    during = per_epoch[scored - 1] if scored and len(per_epoch) >= scored else {}
    last = per_epoch[-1] if per_epoch else {}
    for row in rows:
        row["weight_final"] = final.get(row["task"])
        row["weight_last_epoch"] = last.get(row["task"])
        row["weight_scored_epoch"] = during.get(row["task"])
    return rows


def summarise(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    summary = cq.summarise(rows, ("strategy", "library", "task"))
    for entry in summary:
        weights = [
            float(r["weight_final"])
            for r in rows
            if (r["strategy"], r["library"], r["task"])
            == (entry["strategy"], entry["library"], entry["task"])
            and r["weight_final"] is not None
        ]
        entry["weight_final_mean"] = statistics.fmean(weights) if weights else None
        entry["weight_final_std"] = cq._std(weights)
    base = {
        e["task"]: e["seconds_per_epoch_mean"]
        for e in summary
        if (e["strategy"], e["library"]) == ("fixed", "mtl_reco")
    }
    for entry in summary:
        ref = base.get(entry["task"])
        spe = entry["seconds_per_epoch_mean"]
        entry["time_vs_fixed"] = (
            spe / ref if entry["library"] == "mtl_reco" and ref and spe else None
        )
    return summary


def rechub_outcomes(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for strategy in RECHUB_STRATEGIES:
        mine = [
            r
            for r in runs
            if (r["library"], r["strategy"]) == ("torch_rechub", strategy)
        ]
        if not mine:
            continue
        errors = sorted({r["error"] for r in mine if r["status"] != "ok"})
        out.append(
            {
                "strategy": strategy,
                "seeds": [r["seed"] for r in mine],
                "status": "ok" if not errors else "error",
                "n_failed": sum(r["status"] != "ok" for r in mine),
                "errors": errors,
                "error_locations": sorted(
                    {r["error_location"] for r in mine if r["status"] != "ok"}
                ),
                "note": RECHUB_NOTES[strategy],
            }
        )
    return out


def print_table(summary: Sequence[Mapping[str, Any]]) -> None:
    print(
        f"\n{'strategy':12s} {'library':13s} {'task':8s} {'test AUC':>17s} "
        f"{'final weight':>13s} {'s/epoch':>8s} {'vs fixed':>8s}"
    )
    for s in summary:
        std = "" if s["test_auc_std"] is None else f" ±{s['test_auc_std']:.4f}"
        w = s["weight_final_mean"]
        ratio = s["time_vs_fixed"]
        spe = s["seconds_per_epoch_mean"]
        print(
            f"{s['strategy']:12s} {s['library']:13s} {s['task']:8s} "
            f"{cq.fmt_auc(s['test_auc_mean']) + std:>17s} "
            f"{'-' if w is None else f'{w:.3f}':>13s} "
            f"{'-' if spe is None else f'{spe:.2f}':>8s} "
            f"{'-' if ratio is None else f'{ratio:.2f}x':>8s}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        rechub_version = cq.check_environment(
            ["torch_rechub"] if args.rechub_strategies else []
        )
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
    budget = cq.budget_from_args(args)
    print(
        f"{NAME}: {machine['cpu_model']}, {machine['usable_cpus']} CPUs, torch "
        f"{machine['torch']} ({machine['torch_threads']} threads), Torch-RecHub "
        f"{rechub_version}, load {machine['load_average']}",
        flush=True,
    )
    plan: list[tuple[str, str]] = []
    if "mtl_reco" in args.libraries:
        plan += [(s, "mtl_reco") for s in args.strategies]
    plan += [(s, "torch_rechub") for s in args.rechub_strategies]
    with _common.Timer() as wall:
        data = cq.prepare_data(args.data, args.rows)
        split = data.info["split"]["rows"]
        print(
            f"data: {data.info['rows_read']:,} rows -> train {split['train']:,} / "
            f"valid {split['valid']:,} / test {split['test']:,} "
            f"({data.info['prep_seconds']:.1f} s)",
            flush=True,
        )
        if "mtl_reco" in args.libraries:
            cq.warm_up(data, budget)
        runs: list[dict[str, Any]] = []
        for strategy, library in plan:
            for seed in args.seed_list:
                label = f"[{MODEL} {strategy} / {library} / seed {seed}]"
                print(f"{label} training ...", flush=True)
                if library == "mtl_reco":
                    run = cq.guarded(
                        lambda st=strategy, sd=seed: cq.run_ours(
                            MODEL,
                            data,
                            budget,
                            sd,
                            weighting=st,
                            weighting_params=strategy_params(st, sd),
                        )
                    )
                else:
                    run = cq.guarded(
                        lambda st=strategy, sd=seed: cq.run_rechub(
                            MODEL, data, budget, sd, adaptive=st
                        )
                    )
                line = cq.progress_line(label, run)
                if run["status"] == "ok" and run.get("weights_final"):
                    weights = ", ".join(
                        f"{t} {w:.3f}" for t, w in run["weights_final"].items()
                    )
                    line += f"; final weights {weights}"
                print(line, flush=True)
                runs.append(
                    {
                        "model": MODEL,
                        "strategy": strategy,
                        "library": library,
                        "seed": seed,
                        **run,
                    }
                )
    rows = [
        r
        for run in runs
        for r in weight_rows(
            run,
            {
                "model": MODEL,
                "strategy": run["strategy"],
                "library": run["library"],
                "seed": run["seed"],
            },
        )
    ]
    summary = summarise(rows)
    print_table(summary)
    outcomes = rechub_outcomes(runs)
    for o in outcomes:
        detail = "; ".join(o["errors"]) if o["errors"] else "ran"
        print(f"Torch-RecHub {o['strategy']}: {o['status']} ({detail})")
    errors = [
        {k: run[k] for k in ("strategy", "library", "seed", "error", "error_location")}
        for run in runs
        if run["status"] != "ok" and run["library"] == "mtl_reco"
    ]
    payload = {
        "layout_version": LAYOUT_VERSION,
        "layout": LAYOUT,
        "description": (
            "MMoE on Census-Income (income > 50K, never married) with each "
            "loss-weighting strategy of mtl_reco: test AUC per task (mean and "
            "std across seeds), final task weights and training time per epoch; "
            "Torch-RecHub 0.9.0's own adaptive methods run as they are, for "
            "reference."
        ),
        "note": cq.PAPER_NOTE,
        "config": {
            "quick": args.quick,
            "model": MODEL,
            "model_params": cq.MODEL_PARAMS[MODEL],
            "strategies": args.strategies,
            "strategy_params": {s: STRATEGY_PARAMS[s] for s in args.strategies},
            "strategy_notes": {s: STRATEGY_NOTES[s] for s in args.strategies},
            "libraries": args.libraries,
            "rechub_strategies": args.rechub_strategies,
            "seeds": args.seed_list,
            "budget": cq.budget_record(budget, args),
            "weights": (
                "weight_final: the strategy's weights when training ended (its "
                "current_weights(); not rolled back by the best-epoch restore; "
                "for DWA the weights it computed for a next epoch); "
                "weight_last_epoch / weight_scored_epoch: mean weight over the "
                "steps of the last / the scored epoch (Torch-RecHub: null)"
            ),
            "differences": cq.DIFFERENCES,
        },
        "data": data.info,
        "machine": machine,
        "load_average_end": _common.load_average(),
        "rechub_version": rechub_version,
        "rows": rows,
        "summary": summary,
        "runs": runs,
        "rechub_outcomes": outcomes,
        "errors": errors,
        "wall_s": round(wall.elapsed, 1),
        "peak_rss_mb": _common.peak_rss_mb(),
    }
    path = _common.write_result(
        args.name, payload, None if args.results_dir is None else Path(args.results_dir)
    )
    print(f"\nwrote {path} ({wall.elapsed:.0f} s)")
    if errors:
        print(f"{len(errors)} mtl_reco run(s) failed; see 'errors'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
