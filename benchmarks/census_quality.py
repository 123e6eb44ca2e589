"""Census-Income quality: mtl_reco vs Torch-RecHub 0.9.0 vs the published figures.

SharedBottom, MMoE, PLE and AITM (ESMM needs a click -> purchase funnel)
trained by both libraries on the same split, encoding and budget
(``_census.py``: embedding 4, batch 1024, Adam lr 1e-3 / weight decay 1e-4,
at most 20 epochs, early stopping on the validation split with patience 3,
mean of the two task losses), several seeds each; test AUC mean ± std beside
the MMoE and PLE papers' figures, and the training cost.

    python benchmarks/census_quality.py          # 4 models x 2 libraries x 3 seeds
    python benchmarks/census_quality.py --seeds 5 --models mmoe,ple
    python benchmarks/census_quality.py --libraries mtl_reco --epochs 10 --threads 1
    python benchmarks/census_quality.py --monitor income.auc   # as Torch-RecHub
    python benchmarks/census_quality.py --quick          # CI smoke: 4,000 rows, 1 epoch

Writes ``results/census_quality.json`` (``--quick``: ``census_quality_quick.json``).
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

NAME = "census_quality"
MODELS = tuple(_census.MODEL_PARAMS)
MMOE_PAPER, PLE_PAPER = "MMoE paper Table 1", "PLE paper"
#: Published test AUCs of task group 1: (best, mean) or (reported,).
PAPER = {
    ("mmoe", "income"): (0.9410, 0.9359),
    ("mmoe", "marital"): (0.9926, 0.9927),
    ("shared_bottom", "income"): (0.9361, 0.9295),
    ("shared_bottom", "marital"): (0.9915, 0.9921),
    ("ple", "income"): (0.9522,),
    ("ple", "marital"): (0.9945,),
}
PAPERS = (
    f"Papers: {MMOE_PAPER}: J. Ma, Z. Zhao, X. Yi, J. Chen, L. Hong, E. H. Chi, "
    "Modeling Task Relationships in Multi-task Learning with Multi-gate "
    "Mixture-of-Experts, KDD 2018 (Census-Income group 1: income, marital "
    "status; best and mean test AUC over repeated runs); PLE paper: H. Tang, "
    "J. Liu, M. Zhao, X. Gong, Progressive Layered Extraction (PLE), RecSys "
    "2020 (Census-Income income / marital status)"
)
DIFFERENCES = [
    "Torch-RecHub's MLP puts BatchNorm1d after every hidden Linear (experts, "
    "towers, and its softmax gates); mtl_reco's models have no BatchNorm.",
    "Torch-RecHub's heads output probabilities trained with BCELoss; mtl_reco's "
    "output logits trained with BCEWithLogitsLoss (same objective, stabler).",
    "Objective: mean of the two task losses in both (mtl_reco: fixed weights "
    "0.5/0.5; Torch-RecHub's MTLTrainer without adaptive_params).",
    "Early stopping, validation split only, same patience: Torch-RecHub "
    "monitors task 0 (income AUC, earlystop_taskid=0, its only option); "
    "mtl_reco monitors config.monitor.",
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


@dataclass
class Options(_census.Options):
    models: tuple[str, ...] = option(MODELS, "architectures", choices=MODELS)
    libraries: tuple[str, ...] = option(LIBRARIES, "libraries", choices=LIBRARIES)


def report(doc: dict[str, Any]) -> tuple[list[Table], dict[str, Any], list[str]]:
    """The side-by-side and cost tables, the reading's figures, the notes."""
    index = {(s["model"], s["library"], s["task"]): s for s in doc["summary"]}
    models = list(dict.fromkeys(s["model"] for s in doc["summary"]))
    side = Table(
        "Test AUC, mean ± std over seeds:",
        [("model", ""), ("task", ""), ("mtl_reco", "±4n"),
         ("Torch-RecHub 0.9.0", "±4n"), ("mtl_reco - Torch-RecHub", ".4f"),
         ("paper (best / mean, or reported)", "{}"), ("paper source", "")],
    )  # fmt: skip
    diffs, gaps = [], []
    for model in models:
        for task in TASKS:
            ours, theirs = (
                index.get((model, lib, task), {}).get("test_auc") for lib in LIBRARIES
            )
            diff = ours["mean"] - theirs["mean"] if ours and theirs else None
            paper = PAPER.get((model, task))
            if diff is not None:
                diffs.append(diff)
            if ours and paper:
                gaps.append(ours["mean"] - paper[-1])
            source = (PLE_PAPER if model == "ple" else MMOE_PAPER) if paper else None
            shown = " / ".join(f"{v:.4f}" for v in paper) if paper else None
            side.rows.append([model, task, ours, theirs, diff, shown, source])
    cost = Table(
        "Training cost (means over seeds):",
        [("model", ""), ("mtl_reco epochs", ".1f"), ("mtl_reco s/epoch", ".2f"),
         ("Torch-RecHub epochs", ".1f"), ("Torch-RecHub s/epoch", ".2f")],
    )  # fmt: skip
    for model in models:
        row: list[Any] = [model]
        for lib in LIBRARIES:
            s = index.get((model, lib, TASKS[0]), {})
            row += [s.get("epochs_run_mean"), s.get("seconds_per_epoch_mean")]
        cost.rows.append(row)
    figures = {}
    if diffs:
        figures |= {"diff_min": min(diffs), "diff_max": max(diffs)}
    if gaps:
        figures |= {"paper_gap_min": min(gaps), "paper_gap_max": max(gaps)}
    failed = [
        f"- {e['model']} / {e['library']} / seed {e['seed']}: {e['error']}"
        for e in doc["errors"]
    ]
    notes = [
        _census.budget_note(doc["config"], doc["data"]["split"]["rows"]),
        _census.PAPER_NOTE,
        "Differences between the two libraries that remain:\n\n"
        + "\n".join(f"- {d}" for d in DIFFERENCES),
        *(["Runs that failed:\n\n" + "\n".join(failed)] if failed else []),
        PAPERS,
    ]
    return [side, cost], figures, notes


def main(argv: list[str] | None = None) -> int:
    opts = harness.parse(Options, argv, __doc__ or "")
    weights = {"weights": dict.fromkeys(TASKS, 0.5)}
    ours = partial(
        _census.run_ours, opts=opts, weighting="fixed", weighting_params=weights
    )
    theirs = partial(_census.run_rechub, opts=opts)
    plan = [
        (model, lib, partial(ours if lib == "mtl_reco" else theirs, model))
        for model in opts.models
        for lib in opts.libraries
    ]
    params = {m: _census.MODEL_PARAMS[m] for m in opts.models}
    return _census.drive(NAME, opts, "model", plan, report, model_params=params)


if __name__ == "__main__":
    sys.exit(main())
