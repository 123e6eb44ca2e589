"""Write ``BENCHMARKS.md`` from the result files in ``benchmarks/results/``.

One section per result file, the known benchmarks first in the order of
:data:`SECTIONS`: the command, date and machine recorded in the file, its
tables and notes, and a short reading whose figures come from the file's
``figures`` (a sentence whose figures are missing is left out). A known
benchmark without a file gets a line naming the command that writes it;
``*_quick.json`` files are ignored. The output depends only on the files.

    python benchmarks/make_report.py                 # writes BENCHMARKS.md
    python benchmarks/make_report.py --check         # exit 1 if it is stale
    python benchmarks/make_report.py --results-dir DIR --output FILE
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness import PROJECT_ROOT, RESULTS_DIR, Table

OUTPUT = PROJECT_ROOT / "BENCHMARKS.md"
#: name -> (title, reading: sentences filled from the file's figures)
SECTIONS: dict[str, tuple[str, list[str]]] = {
    "census_quality": (
        "Census-Income quality (MMoE paper setup) vs the papers and Torch-RecHub",
        [
            "The same seeded split of the Census-Income training file, the same "
            "encoding and the same training budget for both libraries, several seeds "
            "each.",
            "mtl_reco's mean test AUC minus Torch-RecHub's ranges from {diff_min:+.4f} "
            "to {diff_max:+.4f} over the model/task pairs.",
            "Against the papers' mean (or only) figures the difference is "
            "{paper_gap_min:+.4f} to {paper_gap_max:+.4f}; the papers scored the "
            "official test file, so that comparison is indicative only.",
        ],
    ),
    "loss_weighting": (
        "Loss weighting on Census-Income (MMoE)",
        [
            "MMoE on the Census split with each of mtl_reco's loss-weighting "
            "strategies under the same budget.",
            "income: test AUC from {income_auc_min:.4f} ({income_auc_min_by}) to "
            "{income_auc_max:.4f} ({income_auc_max_by}).",
            "marital: test AUC from {marital_auc_min:.4f} ({marital_auc_min_by}) to "
            "{marital_auc_max:.4f} ({marital_auc_max_by}).",
            "Differences smaller than the std over seeds are not evidence that one "
            "strategy is better.",
        ],
    ),
    "train_throughput": (
        "Training throughput: mtl_reco vs Torch-RecHub",
        [
            "Both libraries train the same architectures on the same data, batch "
            "size, optimizer and loss weighting in one process.",
            "With each architecture's fastest mtl_reco setting, light: "
            "{light_ratio_min:.1f}x to {light_ratio_max:.1f}x Torch-RecHub's "
            "samples/s; heavy: {heavy_ratio_min:.1f}x to {heavy_ratio_max:.1f}x, at "
            "{heavy_share_min:.0f}-{heavy_share_max:.0f} % of the machine's GEMM "
            "speed.",
            "The 'prebuilt' column times Torch-RecHub's model, loss and optimizer on "
            "batches built beforehand, i.e. without its DataLoader: the ratio against "
            "it isolates the model and training-step code from data loading.",
        ],
    ),
    "data_pipeline": (
        "Data pipeline scale",
        [
            "With {rows_ratio:.0f}x more rows, each stage's peak memory grows by "
            "{rss_ratio_min:.2f}x to {rss_ratio_max:.2f}x: every stage streams its "
            "input in bounded chunks (lazy tables written to parquet chunk by chunk), "
            "so the data half of the pipeline does not need memory proportional to "
            "the data.",
            "Each stage runs in its own process, so its peak RSS is its own.",
        ],
    ),
    "serving": (
        "Serving: ONNX Runtime vs PyTorch eager",
        [
            "At batch 1 ONNX Runtime answers {latency_speedup_min:.1f}x to "
            "{latency_speedup_max:.1f}x faster than PyTorch eager (median latency): a "
            "single row costs little arithmetic, so PyTorch's per-operator Python "
            "dispatch dominates and ONNX Runtime's fused graph avoids it.",
            "At batch 1024, where the matrix multiplications weigh more, the "
            "throughput ratio is {throughput_ratio_min:.2f}x to "
            "{throughput_ratio_max:.2f}x.",
            "The exported models score like PyTorch to within {parity_max:.1e} "
            "(largest absolute difference over every output).",
            "The OnnxPredictor column adds the library's per-call feed building "
            "(splitting the matrices into per-feature arrays) to the raw session.",
        ],
    ),
    "selection_bias": (
        "Sample selection bias, checked against the true pCVR",
        [
            "A CVR label exists only after a click, so real logs cannot say how a CVR "
            "model does on the impressions nobody clicked; the simulator knows every "
            "impression's true pCVR.",
            "Over all test impressions ESMM's latent pCVR {esmm_verb} the naive model "
            "trained on clicked rows (mean AUC against counterfactual labels "
            "{esmm_auc:.4f} vs {naive_auc:.4f}{diff_text}).",
            "Calibration: the naive model's mean pCVR is {naive_ratio_clicked:.2f}x "
            "the truth on the clicked impressions it learnt from but "
            "{naive_ratio_unclicked:.2f}x on the unclicked ones (the selection bias); "
            "ESMM's is {esmm_ratio_clicked:.2f}x and {esmm_ratio_unclicked:.2f}x.",
            "The other architectures, also trained on every impression, imply a pCVR "
            "(pCTCVR / pCTR) with AUC {others_auc_min:.4f} to {others_auc_max:.4f} "
            "against the same labels and {others_ratio_min:.2f}x to "
            "{others_ratio_max:.2f}x the truth on unclicked impressions.",
            "No model reaches the oracle. ESMM's pCVR is pCTCVR / pCTR = "
            "P(purchase | click, x), conditioned on the click like the naive model's "
            "target; where the click and the purchase share a cause the features do "
            "not show (the simulator's per-impression intent), that conditional is "
            "above the pCVR the impression would have if it were clicked, so even a "
            "perfect estimate of it over-estimates on unclicked impressions. What "
            "learning from every impression can remove is the other part of the "
            "bias: the naive model extrapolating to the low-pCTR impressions it "
            "rarely saw.",
            "The second table is each architecture's distance to the oracle (the true "
            "pCTR / pCTCVR used as the score on the same labels).",
        ],
    ),
    "gpu_check": (
        "GPU check: CUDA training, bf16, torch.compile, throughput, ONNX parity",
        [
            "One prepared run on a GPU machine: every architecture trained on the GPU "
            "(fp32 and bf16 autocast) against the same run on the CPU within the "
            "seed-to-seed noise, every loss-weighting strategy finite there, training "
            "throughput through the real Trainer path with the table on the GPU or "
            "streamed from host memory, eager and compiled, and the GPU-trained MMoE "
            "scored through ONNX Runtime on the CPU."
        ],
    ),
    "expert_layout": (
        "Expert layout (MMoE training step)",
        [
            "Which layout of the experts' matrix multiplications the MMoE/PLE layers "
            "use by default ('auto'), checked against the alternatives on full "
            "training steps: a ratio below 1 means the default step is faster than "
            "one plain Linear per expert."
        ],
    ),
    "metrics_speed": (
        "AUC and LogLoss: the project's numpy code vs scikit-learn",
        [
            "The same arrays scored by the project's vectorised numpy AUC and LogLoss "
            "and by scikit-learn's: where scikit-learn is slower by more than the "
            "threshold at the largest size the project keeps its own code."
        ],
    ),
    "weighting_overhead": (
        "Per-step cost of the loss-weighting strategies",
        [
            "The trainer with each strategy against fixed weights and against a bare "
            "training loop ({trainer_fixed_vs_bare_loop:.2f}x its step time) on the "
            "same synthetic data."
        ],
    ),
}


def markdown(table: Table) -> list[str]:
    """A GitHub table: text columns left-aligned, formatted ones right."""
    cells = [
        [c.replace("|", "\\|").replace("\n", " ") for c in r] for r in table.cells()
    ]
    head = [name for name, _ in table.columns]
    align = [":---" if not spec else "---:" for _, spec in table.columns]
    lines = [f"{table.title}", ""] if table.title else []
    lines += [f"| {' | '.join(row)} |" for row in (head, align, *cells)]
    return [*lines, ""]


def machine_line(m: Mapping[str, Any]) -> str:
    """CPU, cores, torch, threads, Python, platform and load, as recorded."""
    cpus = m.get("logical_cpus")
    if cpus and m.get("usable_cpus") not in (None, cpus):
        cpus = f"{cpus} ({m['usable_cpus']} usable)"
    parts = [
        (m.get("cpu_model"), "{}"), (cpus, "{} logical CPUs"),
        (m.get("torch"), "torch {}"), (m.get("torch_threads"), "{} torch thread(s)"),
        (m.get("python"), "Python {}"), (m.get("platform"), "{}"),
        (m.get("peak_rss_mb"), "peak RSS {:,.0f} MB"),
        (" / ".join(f"{x:.2f}" for x in m.get("load_average") or []) or None,
         "load average at start {}"),
    ]  # fmt: skip
    return ", ".join(text.format(v) for v, text in parts if v is not None)


def reading(sentences: list[str], figures: Mapping[str, Any]) -> list[str]:
    text = []
    for sentence in sentences:
        try:
            text.append(sentence.format(**figures))
        except (KeyError, ValueError, TypeError):  # figure not in this file
            continue
    return [f"**What this shows.** {' '.join(text)}", ""] if text else []


def section(stem: str, doc: Any, sentences: list[str]) -> list[str]:
    command = f"python benchmarks/{stem}.py"
    rel = f"benchmarks/results/{stem}.json"
    if isinstance(doc, str):
        return [f"`{rel}` {doc}. Re-run `{command}`.", ""]
    if not isinstance(doc, Mapping) or "tables" not in doc:
        return [f"`{rel}` is not a result of the harness. Re-run `{command}`.", ""]
    lines = [
        f"- **Command:** `{doc.get('command', command)}`",
        f"- **Date:** {doc.get('timestamp', 'not recorded')}",
        f"- **Machine:** {machine_line(doc.get('machine') or {})}",
        "",
    ]
    if (doc.get("config") or {}).get("quick"):
        lines += ["**Note:** this file comes from a `--quick` run.", ""]
    for table in doc["tables"]:
        lines += markdown(Table.from_dict(table))
    for note in doc.get("notes") or []:
        lines += [note, ""]
    return lines + reading(sentences, doc.get("figures") or {})


def load_results(results_dir: Path) -> dict[str, Any]:
    """Every ``<stem>.json`` but ``*_quick.json``; an unreadable one maps to why."""
    found: dict[str, Any] = {}
    for path in sorted(results_dir.glob("*.json")):
        if not path.stem.endswith("_quick"):
            try:
                found[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                found[path.stem] = f"could not be read: {type(exc).__name__}: {exc}"
    return found


def build_report(results_dir: Path = RESULTS_DIR) -> str:
    """The whole markdown document."""
    results = load_results(Path(results_dir))
    order = [*SECTIONS, *(s for s in results if s not in SECTIONS)]
    titles = {
        stem: f"{i}. {SECTIONS[stem][0] if stem in SECTIONS else stem}"
        for i, stem in enumerate(order, 1)
    }
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/make_report.py` from "
        "`benchmarks/results/*.json`; do not edit by hand. How to run each "
        "benchmark and how long it takes: [benchmarks/README.md]"
        "(benchmarks/README.md). Timings depend on the machine and its load at the "
        "time; each section says which machine and when.",
        "",
        "## Contents",
        "",
    ]
    for stem, title in titles.items():
        anchor = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
        missing = "" if stem in results else " (not run yet)"
        lines.append(f"- [{title}](#{anchor.replace(' ', '-')}){missing}")
    for stem, title in titles.items():
        lines += ["", f"## {title}", ""]
        if stem not in results:
            lines += [
                f"Not run yet: `python benchmarks/{stem}.py` writes "
                f"`benchmarks/results/{stem}.json`."
            ]
            continue
        lines += section(stem, results[stem], SECTIONS.get(stem, ("", []))[1])[:-1]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 when stale")
    args = parser.parse_args(argv)
    report = build_report(args.results_dir)
    if args.check:
        current = (
            args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        )
        stale = current != report
        print(f"{args.output} is {'out of date' if stale else 'up to date'}")
        return int(stale)
    args.output.write_text(report, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
