"""Measure MMoE expert layouts: a full training step (forward + backward + Adam).

Candidates (same model otherwise; parameters identical for the three library
layouts, so only the compute differs):

* ``linear_list``: one ``nn.Linear`` per expert and layer (separate
  parameters, as in most reimplementations), outputs stacked;
* ``per_expert``: the library's stacked weights, one ``F.linear`` per expert;
* ``fused``: first layer of all experts as one wide GEMM, then batched matmuls;
* ``bmm``: every layer as a batched matmul over the experts.

Repetitions are interleaved (candidates in a seeded random order inside each
repetition) so machine noise hits every candidate alike; the JSON reports
medians, ratios to ``linear_list`` and to the fastest, samples/s and achieved
GFLOP/s next to the machine's float32 GEMM GFLOP/s measured in the same run.
It also profiles one configuration per size class (top operators by self CPU
time) and compares the embedding lookup variants.

    python benchmarks/expert_layout.py          # full run, writes the JSON
    python benchmarks/expert_layout.py --quick  # fewer repetitions

(output: ``benchmarks/results/expert_layout.json``)

Every size class runs with 2 threads (the machine's cores) and with 1 thread:
on a shared 2-core machine a second process stalls PyTorch's 2-thread
parallel regions, and the 1-thread figures are the ones such noise distorts
least. The ``decision`` section compares the layout that ``expert_layout=auto``
picks (``resolve_expert_layout``) with the fastest measured one.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mtl_reco.modeling.layers import MLP, resolve_expert_layout
from mtl_reco.modeling.models.mmoe import MMoE, MMoEConfig
from mtl_reco.schema import (
    DenseFeature,
    FeatureSchema,
    Funnel,
    SparseFeature,
    TaskSpec,
)

RESULTS = Path(__file__).resolve().parent / "results" / "expert_layout.json"
CANDIDATES = ("linear_list", "per_expert", "fused", "bmm")


@dataclass(frozen=True)
class SizeClass:
    name: str
    batch: int
    n_experts: int
    expert_dims: tuple[int, ...]
    tower_dims: tuple[int, ...]


SIZES = (
    SizeClass("heavy", 2048, 8, (256, 128), (64,)),
    SizeClass("medium", 2048, 8, (128, 64), (32,)),
    SizeClass("light64", 2048, 8, (64,), (8,)),
    SizeClass("light16", 2048, 8, (16,), (8,)),
)


def ali_ccp_like_schema(n_sparse: int, n_dense: int, cardinality: int) -> FeatureSchema:
    """23 sparse fields x 16 + 8 dense = 376 inputs, like the Ali-CCP schema."""
    return FeatureSchema(
        sparse=tuple(SparseFeature(f"s{j}", cardinality, 16) for j in range(n_sparse)),
        dense=tuple(DenseFeature(f"d{j}") for j in range(n_dense)),
        tasks=(TaskSpec("ctr"), TaskSpec("ctcvr")),
        funnel=Funnel("ctr", "ctcvr"),
    )


class LinearListExperts(nn.Module):
    """Baseline expert bank: one ``MLP`` of ``nn.Linear`` layers per expert.

    Not a paper model: the common MMoE expert layout (Ma et al. 2018
    reimplementations), kept here as the reference candidate.

    Args:
        in_dim: Input width.
        n_experts: Number of experts ``E``.
        dims: Hidden widths of each expert.

    Shapes:
        input ``(B, in_dim)`` -> output ``(B, E, dims[-1])``.
    """

    def __init__(self, in_dim: int, n_experts: int, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.experts = nn.ModuleList(MLP(in_dim, dims) for _ in range(n_experts))
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([expert(x) for expert in self.experts], dim=1)


def build(candidate: str, schema: FeatureSchema, size: SizeClass, seed: int) -> MMoE:
    torch.manual_seed(seed)
    layout = "per_expert" if candidate == "linear_list" else candidate
    model = MMoE(
        schema,
        config=MMoEConfig(
            n_experts=size.n_experts,
            expert_dims=list(size.expert_dims),
            tower_dims=list(size.tower_dims),
            expert_layout=layout,  # type: ignore[arg-type]
        ),
    )
    if candidate == "linear_list":
        model.experts = LinearListExperts(  # type: ignore[assignment]
            model.embedding.output_dim, size.n_experts, size.expert_dims
        )
    return model


def make_step(
    model: MMoE, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    sparse, dense, labels = batch
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = model(sparse, dense)
        loss = F.binary_cross_entropy_with_logits(
            out["ctr"], labels[:, 0]
        ) + F.binary_cross_entropy_with_logits(out["ctcvr"], labels[:, 1])
        loss.backward()
        opt.step()

    return step


def forward_matmul_flops(in_dim: int, size: SizeClass, n_tasks: int = 2) -> float:
    b, e = size.batch, size.n_experts
    flops = 0.0
    width = in_dim
    for dim in size.expert_dims:
        flops += 2 * b * e * width * dim
        width = dim
    flops += 2 * b * in_dim * e * n_tasks  # gates
    flops += 2 * b * n_tasks * e * width  # mixture
    for _ in range(n_tasks):
        tw = width
        for dim in (*size.tower_dims, 1):
            flops += 2 * b * tw * dim
            tw = dim
    return flops


def gemm_gflops(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def random_batch(
    schema: FeatureSchema, batch: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    card = schema.sparse[0].cardinality
    sparse = torch.randint(0, card, (batch, len(schema.sparse)), generator=gen)
    dense = torch.randn(batch, len(schema.dense), generator=gen)
    labels = torch.randint(0, 2, (batch, 2), generator=gen).float()
    return sparse.to(torch.int32), dense, labels


def measure_size(
    size: SizeClass, schema: FeatureSchema, reps: int, steps: int, seed: int
) -> dict[str, Any]:
    batch = random_batch(schema, size.batch, seed)
    models = {c: build(c, schema, size, seed) for c in CANDIDATES}
    step_fns = {c: make_step(m, batch) for c, m in models.items()}
    for fn in step_fns.values():  # warm-up
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {c: [] for c in CANDIDATES}
    order = list(CANDIDATES)
    rng = random.Random(seed)
    for _ in range(reps):
        rng.shuffle(order)
        for cand in order:
            t0 = time.perf_counter()
            for _ in range(steps):
                step_fns[cand]()
            times[cand].append((time.perf_counter() - t0) / steps)
    in_dim = models["fused"].embedding.output_dim
    flops = 3 * forward_matmul_flops(in_dim, size)
    medians = {c: statistics.median(v) for c, v in times.items()}
    minima = {c: min(v) for c, v in times.items()}
    fastest = min(medians, key=lambda c: medians[c])
    result: dict[str, Any] = {
        "batch": size.batch,
        "in_dim": in_dim,
        "n_experts": size.n_experts,
        "expert_dims": list(size.expert_dims),
        "tower_dims": list(size.tower_dims),
        "train_matmul_gflop_per_step": flops / 1e9,
        "fastest": fastest,
        "fastest_by_minimum": min(minima, key=lambda c: minima[c]),
        "candidates": {},
    }
    for cand in CANDIDATES:
        med = medians[cand]
        q = (
            statistics.quantiles(times[cand], n=4)
            if len(times[cand]) >= 2
            else [med] * 3
        )
        result["candidates"][cand] = {
            "ms_per_step_median": med * 1e3,
            "ms_per_step_min": min(times[cand]) * 1e3,
            "ms_per_step_iqr": [q[0] * 1e3, q[2] * 1e3],
            "samples_per_s": size.batch / med,
            "achieved_gflops": flops / med / 1e9,
            "ratio_vs_linear_list": med / medians["linear_list"],
            "ratio_vs_fastest": med / medians[fastest],
            # the minimum is the least disturbed by other processes
            "ratio_vs_linear_list_of_minima": minima[cand] / minima["linear_list"],
            "parameter_tensors": len(list(models[cand].parameters())),
        }
    return result


def profile_top_ops(
    size: SizeClass, schema: FeatureSchema, candidate: str, seed: int, top: int = 10
) -> list[dict[str, Any]]:
    from torch.profiler import ProfilerActivity, profile

    step = make_step(
        build(candidate, schema, size, seed), random_batch(schema, size.batch, seed)
    )
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {
            "op": e.key,
            "share_of_aten_self_time": e.self_cpu_time_total / total,
            "calls_per_step": e.count / 5,
        }
        for e in events[:top]
    ]


def embedding_lookup(schema: FeatureSchema, batch: int, reps: int) -> dict[str, Any]:
    """Forward + backward of the grouped table: F.embedding vs index_select."""
    n_rows = sum(f.cardinality for f in schema.sparse)
    weight = torch.randn(n_rows, 16, requires_grad=True)
    offsets = torch.arange(len(schema.sparse)) * schema.sparse[0].cardinality
    ids = random_batch(schema, batch, 0)[0].long() + offsets
    grad = torch.randn(batch, len(schema.sparse), 16)
    variants = {
        "F.embedding": lambda: F.embedding(ids, weight),
        "index_select": lambda: weight.index_select(0, ids.reshape(-1)).view(
            batch, -1, 16
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(5):
                weight.grad = None
                fn().backward(grad)
            times[name].append((time.perf_counter() - t0) / 5)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "table_rows": n_rows,
        "batch": batch,
        "ms_median": {k: v * 1e3 for k, v in med.items()},
        "ratio_index_select_vs_embedding": med["index_select"] / med["F.embedding"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--steps", type=int, default=4, help="steps per repetition")
    parser.add_argument("--cardinality", type=int, default=1000, help="ids per field")
    parser.add_argument("--sizes", default=",".join(s.name for s in SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="5 repetitions")
    parser.add_argument("--threads", default="2,1", help="thread counts to run")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    reps = 5 if args.quick else args.reps
    schema = ali_ccp_like_schema(23, 8, args.cardinality)
    wanted = [s for s in SIZES if s.name in set(args.sizes.split(","))]
    threads = [int(t) for t in args.threads.split(",")]
    default_threads = torch.get_num_threads()
    gemm: dict[str, float] = {}
    runs: dict[str, dict[str, Any]] = {}
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        key = f"threads={n_threads}"
        before = gemm_gflops()
        runs[key] = {
            size.name: measure_size(size, schema, reps, args.steps, args.seed)
            for size in wanted
        }
        gemm[key] = max(before, gemm_gflops())
        for res in runs[key].values():
            for cand in res["candidates"].values():
                cand["share_of_gemm"] = cand["achieved_gflops"] / gemm[key]
    torch.set_num_threads(default_threads)
    decision = {}
    for size in wanted:
        auto = resolve_expert_layout(
            "auto", 23 * 16 + 8, size.n_experts, size.expert_dims
        )
        decision[size.name] = {
            "auto_layout": auto,
            "fastest": {k: run[size.name]["fastest"] for k, run in runs.items()},
            "fastest_by_minimum": {
                k: run[size.name]["fastest_by_minimum"] for k, run in runs.items()
            },
            "auto_ratio_vs_fastest": {
                k: run[size.name]["candidates"][auto]["ratio_vs_fastest"]
                for k, run in runs.items()
            },
            "auto_ratio_vs_linear_list": {
                k: run[size.name]["candidates"][auto]["ratio_vs_linear_list"]
                for k, run in runs.items()
            },
        }
    profiles = {}
    if not args.no_profile:
        for size in wanted:
            auto = decision[size.name]["auto_layout"]
            profiles[size.name] = {
                cand: profile_top_ops(size, schema, cand, args.seed)
                for cand in dict.fromkeys(("linear_list", auto))
            }
    report = {
        "benchmark": "expert_layout",
        "what": "MMoE full training step (forward + backward + fused Adam), "
        "2 tasks, interleaved repetitions, medians",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "default_threads": default_threads,
            "gemm_fp32_gflops_2048": gemm,
        },
        "settings": {
            "reps": reps,
            "steps_per_rep": args.steps,
            "schema": "23 sparse x 16 + 8 dense (Ali-CCP shaped)",
            "cardinality_per_field": args.cardinality,
            "seed": args.seed,
        },
        "runs": runs,
        "decision": decision,
        "profiles_top_aten_ops": profiles,
        "embedding_lookup": embedding_lookup(schema, 2048, reps),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    summary = {
        key: {
            name: {
                c: round(v["ratio_vs_linear_list"], 3)
                for c, v in res["candidates"].items()
            }
            for name, res in run.items()
        }
        for key, run in runs.items()
    }
    print(json.dumps({"written": str(args.out), "ratios_vs_linear_list": summary}))


if __name__ == "__main__":
    main()
