"""Per-step cost of each loss-weighting strategy relative to ``fixed``.

Trains one architecture with the mtl_reco :class:`Trainer` for each strategy on
the same synthetic Census-shaped data (32 sparse fields x dim 8 + 7 dense, two
classification tasks), and also times a bare training loop (forward, summed
BCE, ``backward``, fused Adam) to show the trainer's own overhead. Every
configuration runs ``--repeats`` times, round robin; the fastest epoch counts
(the machine is shared and noisy; ``--threads 1`` is steadier there).

Usage::

    python benchmarks/weighting_overhead.py --model mmoe --size light \
        --out benchmarks/results/weighting_overhead.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.data import TensorTable
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.modeling.trainer import Trainer
from mtl_reco.modeling.weighting.registry import available_strategies, build_strategy
from mtl_reco.schema import (
    DenseFeature,
    FeatureSchema,
    Funnel,
    SparseFeature,
    TaskSpec,
)

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "light": {
        "shared_bottom": {"bottom_dims": [64], "tower_dims": [8]},
        "mmoe": {"n_experts": 8, "expert_dims": [16], "tower_dims": [8]},
        "ple": {"n_levels": 1, "expert_dims": [16], "tower_dims": [8]},
        "esmm": {"ctr_dims": [16], "cvr_dims": [16]},
        "aitm": {"tower_dims": [32], "head_dims": [8]},
    },
    "heavy": {
        "shared_bottom": {"bottom_dims": [256, 128], "tower_dims": [64]},
        "mmoe": {"n_experts": 8, "expert_dims": [256, 128], "tower_dims": [64]},
        "ple": {"expert_dims": [256, 128], "tower_dims": [64]},
        "esmm": {"ctr_dims": [256, 128], "cvr_dims": [256, 128]},
        "aitm": {"tower_dims": [256, 128], "head_dims": [64]},
    },
}


def make_table(rows: int, seed: int = 0) -> tuple[FeatureSchema, TensorTable]:
    """Census-shaped random data: 32 sparse fields (dim 8) + 7 dense, 2 tasks."""
    rng = np.random.default_rng(seed)
    cards = rng.integers(3, 60, 32)
    schema = FeatureSchema(
        sparse=tuple(SparseFeature(f"s{i}", int(c), 8) for i, c in enumerate(cards)),
        dense=tuple(DenseFeature(f"d{i}") for i in range(7)),
        tasks=(TaskSpec("ctr"), TaskSpec("ctcvr")),
        funnel=Funnel("ctr", "ctcvr"),
    )
    sparse = np.stack([rng.integers(0, c, rows) for c in cards], 1).astype(np.int32)
    dense = rng.normal(size=(rows, 7)).astype(np.float32)
    click = (rng.random(rows) < 0.3).astype(np.float32)
    labels = np.stack([click, click * (rng.random(rows) < 0.3)], 1).astype(np.float32)
    table = TensorTable(
        torch.from_numpy(sparse),
        torch.from_numpy(dense),
        torch.from_numpy(labels),
        ("ctr", "ctcvr"),
    )
    return schema, table


def time_trainer(
    model_name: str,
    params: dict[str, Any],
    strategy: str,
    schema: FeatureSchema,
    table: TensorTable,
    batch: int,
    repeats: int,
) -> float:
    """Fastest seconds per training step over ``repeats`` one-epoch runs."""
    best = float("inf")
    for r in range(repeats):
        torch.manual_seed(r)
        model = build_model(model_name, schema, None, params)
        cfg = TrainerConfig(epochs=1, batch_size=batch, device="cpu", progress=False)
        result = Trainer(model, build_strategy(strategy, model.task_names), cfg).fit(
            table
        )
        steps = table.num_batches(batch)
        best = min(best, result.history[0]["epoch_time_s"] / steps)
    return best


def time_bare(
    model_name: str,
    params: dict[str, Any],
    schema: FeatureSchema,
    table: TensorTable,
    batch: int,
    repeats: int,
) -> float:
    """Fastest seconds per step of a minimal loop (sum of BCEs, fused Adam)."""
    best = float("inf")
    for r in range(repeats):
        torch.manual_seed(r)
        model = build_model(model_name, schema, None, params)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        gen = torch.Generator().manual_seed(r)
        steps = 0
        start = time.perf_counter()
        for b in table.batches(batch, shuffle=True, generator=gen):
            out = model(b.sparse, b.dense)
            loss = F.binary_cross_entropy_with_logits(out["ctr"], b.labels[:, 0])
            loss = loss + F.binary_cross_entropy_with_logits(
                out["ctcvr"], b.labels[:, 1]
            )
            aux = model.auxiliary_loss(out)
            if aux is not None:
                loss = loss + aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mmoe", choices=sorted(SIZES["light"]))
    parser.add_argument("--size", default="light", choices=sorted(SIZES))
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    schema, table = make_table(args.batch * args.steps)
    params = SIZES[args.size][args.model]
    # warm-up (allocator, kernels)
    time_bare(
        args.model,
        params,
        schema,
        table.subset(torch.arange(4 * args.batch)),
        args.batch,
        1,
    )
    names = ["fixed", *[s for s in available_strategies() if s != "fixed"]]
    bare = float("inf")
    per_step = dict.fromkeys(names, float("inf"))
    for _ in range(args.repeats):  # round robin: noise spreads over all entries
        bare = min(bare, time_bare(args.model, params, schema, table, args.batch, 1))
        for name in names:
            step = time_trainer(args.model, params, name, schema, table, args.batch, 1)
            per_step[name] = min(per_step[name], step)
    fixed = per_step["fixed"]
    result = {
        "model": args.model,
        "size": args.size,
        "params": params,
        "batch_size": args.batch,
        "steps_per_epoch": args.steps,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "bare_loop_ms_per_step": bare * 1e3,
        "trainer_ms_per_step": {k: v * 1e3 for k, v in per_step.items()},
        "relative_to_fixed": {k: v / fixed for k, v in per_step.items()},
        "trainer_fixed_vs_bare_loop": fixed / bare,
    }
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
