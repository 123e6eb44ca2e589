"""Expert layouts of MMoE: a full training step (forward, backward, fused Adam).

The same MMoE (2 tasks, 23 sparse fields x 16 + 8 dense inputs) with its
experts as ``linear_list`` (one ``MLP`` of ``nn.Linear`` per expert, the
usual layout of reimplementations, built here from the library's layers: the
reference) or with the model config's ``expert_layout`` ``per_expert``,
``fused``, ``bmm``, ``manual`` (hand-written kernels) and ``auto`` (the
default). Repetitions interleave the candidates (seeded random order); medians
and minima per step, ratios to ``linear_list``, share of the GEMM speed.

    python benchmarks/expert_layout.py                 # 4 sizes, threads 2 and 1
    python benchmarks/expert_layout.py --sizes heavy --threads 1
    python benchmarks/expert_layout.py --quick         # CI smoke

Writes ``results/expert_layout.json`` (``--quick``: ``..._quick.json``).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import _sizes
import harness
from harness import Table, option
from mtl_reco import schema as fs
from mtl_reco.modeling.layers import MLP, FeatureEmbedding, SoftmaxGate, Tower
from mtl_reco.modeling.models.registry import build_model

NAME = "expert_layout"
CANDIDATES = ("linear_list", "per_expert", "fused", "bmm", "manual", "auto")
#: name: (n_experts, expert_dims, tower_dims)
SIZES = {
    "heavy": (8, [256, 128], [64]),
    "medium": (8, [128, 64], [32]),
    "light64": (8, [64], [8]),
    "light16": (8, [16], [8]),
}
TASKS = ("ctr", "ctcvr")


@dataclass
class Options(harness.Config):
    sizes: tuple[str, ...] = option(tuple(SIZES), "", choices=SIZES)
    threads: tuple[int, ...] = option(  # type: ignore[assignment]
        (2, 1), "thread counts", quick=(1,)
    )
    candidates: tuple[str, ...] = option(CANDIDATES, "", choices=CANDIDATES)
    reps: int = option(15, "interleaved repetitions", quick=3)
    steps: int = option(4, "steps per repetition", quick=2)
    batch: int = option(2048, "rows per step", quick=256)
    cardinality: int = option(1000, "ids per sparse field")
    seed: int = option(0, "")


class LinearListMMoE(nn.Module):
    """MMoE with one ``MLP`` of ``nn.Linear`` per expert (the reference)."""

    def __init__(self, schema: fs.FeatureSchema, size: str) -> None:
        super().__init__()
        n, dims, towers = SIZES[size]
        self.embedding = FeatureEmbedding(schema)
        width = self.embedding.output_dim
        self.experts = nn.ModuleList(MLP(width, dims) for _ in range(n))
        self.gates = nn.ModuleList(SoftmaxGate(width, n) for _ in TASKS)
        self.towers = nn.ModuleList(Tower(dims[-1], towers) for _ in TASKS)

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor) -> dict[str, Any]:
        x = self.embedding(sparse, dense)
        experts = torch.stack([e(x) for e in self.experts], 1)  # (B, E, d)
        heads = zip(TASKS, self.gates, self.towers, strict=True)
        return {t: tw((g(x).unsqueeze(1) @ experts).squeeze(1)) for t, g, tw in heads}


def build(candidate: str, schema: fs.FeatureSchema, size: str) -> nn.Module:
    if candidate == "linear_list":
        return LinearListMMoE(schema, size)
    n, dims, towers = SIZES[size]
    config = {"n_experts": n, "expert_dims": dims, "tower_dims": towers}
    return build_model("mmoe", schema, TASKS, {**config, "expert_layout": candidate})


def make_step(model: nn.Module, opts: Options) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(opts.seed)
    shape = (opts.batch, 23)
    sparse = torch.randint(0, opts.cardinality, shape, generator=gen, dtype=torch.int32)
    dense = torch.randn(opts.batch, 8, generator=gen)
    labels = torch.randint(0, 2, (opts.batch, 2), generator=gen).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = model(sparse, dense)
        loss = sum(
            F.binary_cross_entropy_with_logits(out[t], labels[:, i])
            for i, t in enumerate(TASKS)
        )
        loss.backward()  # type: ignore[union-attr]
        opt.step()

    return step


def measure(size: str, schema: fs.FeatureSchema, opts: Options, gemm: float) -> dict:
    """Interleaved repetitions of every candidate's step at one size."""
    steps = {}
    for cand in opts.candidates:
        torch.manual_seed(opts.seed)
        steps[cand] = make_step(build(cand, schema, size), opts)
        for _ in range(3):
            steps[cand]()
    times: dict[str, list[float]] = {c: [] for c in opts.candidates}
    order, rng = list(opts.candidates), random.Random(opts.seed)
    for _ in range(opts.reps):
        rng.shuffle(order)
        for cand in order:
            t0 = time.perf_counter()
            for _ in range(opts.steps):
                steps[cand]()
            times[cand].append((time.perf_counter() - t0) / opts.steps)
    median = {c: statistics.median(v) for c, v in times.items()}
    minimum = {c: min(v) for c, v in times.items()}
    n, dims, towers = SIZES[size]
    params = {"n_experts": n, "expert_dims": dims, "tower_dims": towers,
              "embedding_dim": schema.sparse[0].embedding_dim}  # fmt: skip
    flops = 3 * opts.batch * _sizes.forward_matmul_flops("mmoe", params, schema)
    ref = median.get("linear_list")
    return {
        "fastest": min(median, key=median.__getitem__),
        "fastest_by_minimum": min(minimum, key=minimum.__getitem__),
        "candidates": {
            c: {
                "ms_median": 1e3 * median[c],
                "ms_min": 1e3 * minimum[c],
                "samples_per_s": opts.batch / median[c],
                "share_of_gemm": flops / median[c] / 1e9 / gemm,
                "ratio_vs_linear_list": median[c] / ref if ref else None,
            }
            for c in opts.candidates
        },
    }


def report(doc: dict[str, Any]) -> tuple[list[Table], dict[str, Any], list[str]]:
    summary = Table(
        "",
        [("size", ""), ("threads", "d"), ("fastest (median)", ""),
         ("fastest (minimum)", ""), ("auto time / per-expert Linear time", ".2f"),
         ("auto time / fastest", ".2f")],
    )  # fmt: skip
    names = list(dict.fromkeys(c for r in doc["runs"] for c in r["candidates"]))
    steps = Table(
        "Milliseconds per training step (median):",
        [("size", ""), ("threads", "d"), *((c, ".1f") for c in names)],
    )
    for r in doc["runs"]:
        cands = r["candidates"]
        auto, best = cands.get("auto", {}), cands[r["fastest"]]["ms_median"]
        summary.rows.append(
            [r["size"], r["threads"], r["fastest"], r["fastest_by_minimum"],
             auto.get("ratio_vs_linear_list"), auto.get("ms_median", best) / best]
        )  # fmt: skip
        row = [cands.get(c, {}).get("ms_median") for c in names]
        steps.rows.append([r["size"], r["threads"], *row])
    gemm = ", ".join(f"{v:.0f} GFLOP/s ({k} thread(s))" for k, v in doc["gemm"].items())
    notes = [
        "Measured: MMoE full training step (forward + backward + fused Adam), 2 "
        f"tasks, interleaved repetitions, medians; float32 GEMM reference {gemm}.",
        *doc.get("notes", []),
    ]
    return [summary, steps], {}, notes


def main(argv: list[str] | None = None) -> int:
    opts = harness.parse(Options, argv, __doc__ or "")
    result = harness.start(NAME, opts)
    schema = fs.FeatureSchema(
        sparse=tuple(
            fs.SparseFeature(f"s{j}", opts.cardinality, 16) for j in range(23)
        ),
        dense=tuple(fs.DenseFeature(f"d{j}") for j in range(8)),
        tasks=tuple(fs.TaskSpec(t) for t in TASKS),
        funnel=fs.Funnel("ctr", "ctcvr"),
    )
    runs, gemm = [], {}
    for threads in opts.threads:
        torch.set_num_threads(threads)
        gemm[str(threads)] = max(harness.measure_gemm(2048, 5))
        for size in opts.sizes:
            run = measure(size, schema, opts, gemm[str(threads)])
            runs.append({"size": size, "threads": threads, **run})
            harness.say(f"{size} threads={threads}: fastest {run['fastest']}")
    doc = {"gemm": gemm, "runs": runs}
    result.results = doc
    result.tables, result.figures, result.notes = report(doc)
    result.write(opts.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
