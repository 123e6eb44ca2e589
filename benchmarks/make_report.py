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
    "census_quality": ("Census-Income quality (MMoE paper setup) vs the papers and "
                       "Torch-RecHub", [
        "The same split, encoding and budget for both libraries, several seeds each.",
        "mtl_reco's mean test AUC minus Torch-RecHub's ranges from {diff_min:+.4f} to "
        "{diff_max:+.4f} over the model/task pairs.",
        "Against the papers' mean (or only) figures the difference is "
        "{paper_gap_min:+.4f} to {paper_gap_max:+.4f}; the papers scored the "
        "official test file, so that comparison is indicative only.",
    ]),
    "loss_weighting": ("Loss weighting on Census-Income (MMoE)", [
        "income: test AUC from {income_auc_min:.4f} ({income_auc_min_by}) to "
        "{income_auc_max:.4f} ({income_auc_max_by}).",
        "marital: test AUC from {marital_auc_min:.4f} ({marital_auc_min_by}) to "
        "{marital_auc_max:.4f} ({marital_auc_max_by}).",
        "Differences smaller than the std over seeds are not evidence that one "
        "strategy is better.",
    ]),
    "train_throughput": ("Training throughput: mtl_reco vs Torch-RecHub", [
        "With each architecture's fastest mtl_reco setting, light: "
        "{light_ratio_min:.1f}x to {light_ratio_max:.1f}x Torch-RecHub's samples/s; "
        "heavy: {heavy_ratio_min:.1f}x to {heavy_ratio_max:.1f}x, at "
        "{heavy_share_min:.0f}-{heavy_share_max:.0f} % of the machine's GEMM speed.",
        "The ratio against 'prebuilt' batches leaves Torch-RecHub's DataLoader out: "
        "it compares the model and training-step code alone.",
    ]),
    "data_pipeline": ("Data pipeline scale", [
        "With {rows_ratio:.0f}x more rows, each stage's peak memory grows by "
        "{rss_ratio_min:.2f}x to {rss_ratio_max:.2f}x: every stage streams its input "
        "in bounded chunks, so the data half of the pipeline does not need memory "
        "proportional to the data (each stage in its own process: its peak RSS is "
        "its own).",
    ]),
    "scale": ("Training at scale: streaming input and DDP ranks", [
        "Streamed from parquet, training runs at {stream_vs_memory_min:.2f}x to "
        "{stream_vs_memory_max:.2f}x memory mode's samples/s (one rank).",
        "Two gloo ranks on this 2-core machine run at {two_ranks_vs_one_min:.2f}x to "
        "{two_ranks_vs_one_max:.2f}x one process: data parallelism pays where each "
        "rank has a device (or cores) of its own.",
        "The whole streamed run (data half, one epoch, evaluation, export) ended with "
        "exit status {pipeline_exit_status} at a peak RSS of "
        "{pipeline_peak_rss_mb:,.0f} MB.",
    ]),
    "serving": ("Serving: ONNX Runtime vs PyTorch eager", [
        "At batch 1 ONNX Runtime answers {latency_speedup_min:.1f}x to "
        "{latency_speedup_max:.1f}x faster than PyTorch eager (median latency): a "
        "single row costs little arithmetic, so PyTorch's per-operator dispatch "
        "dominates and ONNX Runtime's fused graph avoids it.",
        "At batch 1024 the throughput ratio is {throughput_ratio_min:.2f}x to "
        "{throughput_ratio_max:.2f}x.",
        "The exported models score like PyTorch to within {parity_max:.1e} (largest "
        "absolute difference over every output).",
    ]),
    "selection_bias": ("Sample selection bias, checked against the true pCVR", [
        "Over all test impressions ESMM's latent pCVR {esmm_verb} the naive model "
        "trained on clicked rows (mean AUC against counterfactual labels "
        "{esmm_auc:.4f} vs {naive_auc:.4f}{diff_text}).",
        "The naive model's mean pCVR is {naive_ratio_clicked:.2f}x the truth on the "
        "clicked impressions it learnt from but {naive_ratio_unclicked:.2f}x on the "
        "unclicked ones (the selection bias); ESMM's is {esmm_ratio_clicked:.2f}x and "
        "{esmm_ratio_unclicked:.2f}x.",
        "The other architectures imply a pCVR (pCTCVR / pCTR) with AUC "
        "{others_auc_min:.4f} to {others_auc_max:.4f} and {others_ratio_min:.2f}x to "
        "{others_ratio_max:.2f}x the truth on unclicked impressions.",
        "No model reaches the oracle: ESMM's pCVR is P(purchase | click, x); where "
        "the click and the purchase share a cause the features do not show (the "
        "simulator's per-impression intent), that is above the pCVR the impression "
        "would have if clicked, so even a perfect estimate over-estimates on "
        "unclicked impressions. Learning from every impression removes the other "
        "part of the bias: extrapolating to the low-pCTR impressions rarely clicked.",
    ]),
    "gpu_check": ("GPU check: CUDA training, bf16, torch.compile, throughput, "
                  "ONNX parity", [
        "Every architecture trained on the GPU (fp32, bf16) against the CPU within "
        "the seed-to-seed noise, every weighting strategy finite there, throughput "
        "eager and compiled, and the GPU-trained MMoE through ONNX Runtime.",
    ]),
    "expert_layout": ("Expert layout (MMoE training step)", [
        "A ratio below 1 means the default ('auto') layout's training step is "
        "faster than one plain Linear per expert.",
    ]),
    "weighting_overhead": ("Per-step cost of the loss-weighting strategies", [
        "mtl_reco's trainer with fixed weights takes {trainer_fixed_vs_bare_loop:.2f}x "
        "the bare loop's time per step.",
        "The strategies that need per-task gradients cost more per step than fixed "
        "weights: GradNorm {gradnorm_vs_fixed:.2f}x (gradients of the last shared "
        "layer only), MetaBalance {metabalance_vs_fixed:.2f}x and PCGrad "
        "{pcgrad_vs_fixed:.2f}x (a backward pass per task).",
    ]),
    "metrics_speed": ("AUC and LogLoss: the project's numpy code vs scikit-learn", [
        "Where scikit-learn is slower by more than the threshold at the largest "
        "size, the project keeps its own code.",
    ]),
}  # fmt: skip


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
