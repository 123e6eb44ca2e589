"""Per-step cost of each loss-weighting strategy relative to ``fixed``.

One architecture at a size of ``_sizes.py`` trained by mtl_reco's ``Trainer``
with each strategy on the same Ali-CCP-shaped rows, next to a bare training
loop (forward, summed BCE, backward, fused Adam) that shows the trainer's own
overhead. Every configuration runs ``--repeats`` times round robin; the
fastest epoch counts.

    python benchmarks/weighting_overhead.py --model mmoe --size light
    python benchmarks/weighting_overhead.py --size heavy --threads 1
    python benchmarks/weighting_overhead.py --quick

Writes ``results/weighting_overhead.json`` (``--quick``: ``..._quick.json``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

import _sizes
import harness
from _sizes import ARCHS, SIZES, TASKS
from harness import Table, option
from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.modeling.trainer import Trainer
from mtl_reco.modeling.weighting.registry import available_strategies, build_strategy

NAME = "weighting_overhead"


@dataclass
class Options(harness.Config):
    model: str = option("mmoe", "architecture", choices=ARCHS)
    size: str = option("light", "size class", choices=tuple(SIZES))
    batch: int = option(1024, "batch size", quick=256)
    steps: int = option(40, "steps per epoch", quick=4)
    repeats: int = option(3, "round-robin repetitions", quick=1)


def step_seconds(strategy: str | None, data: Any, opts: Options, seed: int) -> float:
    """Seconds per step of one epoch: the trainer with ``strategy``, or the
    bare loop (``None``)."""
    schema, table = data
    torch.manual_seed(seed)
    params = _sizes.model_params(opts.size, opts.model)
    model = build_model(opts.model, schema, None, params)
    steps = table.num_batches(opts.batch)
    if strategy is not None:
        cfg = TrainerConfig(
            epochs=1, batch_size=opts.batch, device="cpu", progress=False
        )
        trainer = Trainer(model, build_strategy(strategy, model.task_names), cfg)
        return float(trainer.fit(table).history[0]["epoch_time_s"]) / steps
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for b in table.batches(opts.batch, shuffle=True, generator=gen):
        out = model(b.sparse, b.dense)
        loss = sum(
            F.binary_cross_entropy_with_logits(out[t], b.labels[:, i])
            for i, t in enumerate(TASKS)
        )
        aux = model.auxiliary_loss(out)
        opt.zero_grad(set_to_none=True)
        (loss if aux is None else loss + aux).backward()  # type: ignore[union-attr]
        opt.step()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    opts = harness.parse(Options, argv, __doc__ or "")
    result = harness.start(
        NAME, opts, params=_sizes.model_params(opts.size, opts.model)
    )
    data = _sizes.ali_ccp_like(opts.batch * opts.steps, seed=0)
    names = [None, "fixed", *(s for s in available_strategies() if s != "fixed")]
    best = dict.fromkeys(names, float("inf"))
    step_seconds(None, data, opts, 0)  # warm-up (allocator, kernels)
    for rep in range(opts.repeats):  # round robin: noise spreads over all entries
        for name in names:
            best[name] = min(best[name], step_seconds(name, data, opts, rep))
    ms = {name or "bare loop": 1e3 * s for name, s in best.items()}
    result.results = {"ms_per_step": ms}
    table = Table(
        f"{opts.model}, {opts.size}, batch {opts.batch}: fastest ms per step",
        [("loop", ""), ("ms per step", ".2f"), ("vs fixed", "{:.2f}x")],
    )
    table.rows = [[k, v, v / ms["fixed"]] for k, v in ms.items()]
    result.tables = [table]
    result.figures = {f"{k}_vs_fixed": v / ms["fixed"] for k, v in ms.items()}
    result.figures["trainer_fixed_vs_bare_loop"] = ms["fixed"] / ms["bare loop"]
    result.write(opts.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
