"""Training throughput: mtl_reco vs Torch-RecHub 0.9.0, side by side in one run.

Every architecture is trained by both libraries in the same process, on the
same synthetic Ali-CCP-shaped data (23 sparse fields + 8 dense, two tasks
``ctr`` and ``ctcvr``) with the same batch size, Adam (lr 1e-3, weight decay
1e-4) and the same task-loss weighting (the mean of the two task losses, as
Torch-RecHub's trainer does; ESMM: their sum), at two sizes:

* **light** - Torch-RecHub's own Ali-CCP example
  (``examples/ranking/run_ali_ccp_multi_task.py``): embedding 4 (ESMM 16),
  batch 1024; SharedBottom bottom [117] + towers [8]; MMoE 8 experts [16] +
  towers [8]; PLE 1 level, 2 task-specific + 1 shared experts [16], towers
  [8]; AITM bottoms [32, 16] + towers [8]; ESMM CTR/CVR towers [16, 8];
* **heavy** - embedding 16, batch 2048; SharedBottom [256, 128]; MMoE 8
  experts [256, 128]; PLE 2 levels x (3 task-specific per task + 2 shared =
  8 experts) [256, 128]; AITM towers [256, 128]; ESMM CTR/CVR [256, 128];
  task towers / heads [64].

Measured per model (after an untimed warm-up of a few batches, every library
trains the same number of samples: ``epochs x rows``):

* ``mtl_reco``: ``Trainer.fit`` - the real training path (shuffled batches
  sliced from a contiguous ``TensorTable``, loss weighting ``fixed``, fused
  Adam, no validation, no checkpoint), timed around the call;
* ``rechub``: its ``MTLTrainer.train_one_epoch`` with the DataLoader its
  ``DataGenerator`` builds (what a user of the library runs);
* ``rechub_prebuilt``: its model, loss and Adam on batches built beforehand
  (the model's own cost, without its loader);
* once per size, its DataLoader alone.

FLOPs: the forward matrix-multiply FLOPs of OUR model per sample are counted
analytically from its layer shapes (``2 * fan_in * fan_out`` for every
Linear / expert layer / gate / tower / head, ``2 * G * E * d`` for the gate
mixtures, AITM's projections on its 2 stacked rows and its weighted sum;
element-wise work, softmax, BatchNorm and embedding lookups count zero). A
training step costs ``3x`` that (forward, gradient w.r.t. inputs, gradient
w.r.t. weights). The formula is cross-checked against
``torch.utils.flop_counter.FlopCounterMode`` on a real forward pass.
``achieved GFLOP/s = 3 * flops_per_sample * samples_per_s / 1e9``, reported
as a share of the machine's float32 GEMM GFLOP/s measured in the same run
(best of all repetitions of a square n=2048 matmul, taken before, between and
after the sizes, with the benchmark's thread count).

Targets (issue 3): light >= 5x Torch-RecHub; heavy >= 1.5x Torch-RecHub and
>= 70 % of the measured GEMM figure. The JSON says which are met.

``--profile`` (on by default for full runs that include the heavy size)
profiles our heavy training step of ``--profile-models`` (MMoE, PLE): plain
phase timings (loader, forward, loss, backward, optimizer) and a
torch.profiler breakdown by model part (embedding, experts, gates, towers,
gate mixtures and glue, ...), forward and backward, and by kind of op.

    python benchmarks/train_throughput.py                 # full run (~10-20 min)
    python benchmarks/train_throughput.py --quick         # CI smoke, seconds
    python benchmarks/train_throughput.py --sizes heavy --models mmoe,ple
    python benchmarks/train_throughput.py --rows 262144 --epochs 2 --repeats 3

Output: ``benchmarks/results/train_throughput.json`` (``--quick``:
``train_throughput_quick.json``; ``--results-dir`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import resource
import statistics
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

import _common
import _rechub
from mtl_reco.modeling.config import (
    EarlyStoppingConfig,
    OptimizerConfig,
    TrainerConfig,
)
from mtl_reco.modeling.data import Batch, TensorTable
from mtl_reco.modeling.models import ple as ple_module
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.modeling.trainer import Trainer
from mtl_reco.modeling.weighting.base import LossWeighting
from mtl_reco.modeling.weighting.registry import build_strategy
from mtl_reco.schema import (
    DenseFeature,
    FeatureSchema,
    Funnel,
    SparseFeature,
    TaskSpec,
)
from mtl_reco.sources.ali_ccp import DENSE, SPARSE
from mtl_reco.sources.simulated import SimulatedOptions

NAME = "train_throughput"
TASKS = ("ctr", "ctcvr")
ARCHS = ("shared_bottom", "mmoe", "ple", "aitm", "esmm")
LR = 1e-3
WEIGHT_DECAY = 1e-4  # Torch-RecHub's Ali-CCP example
TARGETS = {
    "light": {"min_ratio": 5.0},
    "heavy": {"min_ratio": 1.5, "min_gemm_share": 0.70},
}

log = logging.getLogger("train_throughput")


# -- configurations -----------------------------------------------------------------
@dataclass(frozen=True)
class Size:
    """One size class: batch, embedding size and per-architecture params."""

    name: str
    batch_size: int
    embedding_dim: int
    models: Mapping[str, Mapping[str, Any]]
    embedding_dim_overrides: Mapping[str, int] = field(default_factory=dict)
    origin: str = ""

    def embedding_for(self, arch: str) -> int:
        return int(self.embedding_dim_overrides.get(arch, self.embedding_dim))


SIZES: dict[str, Size] = {
    "light": Size(
        name="light",
        batch_size=1024,
        embedding_dim=4,
        embedding_dim_overrides={"esmm": 16},
        models={
            "shared_bottom": {"bottom_dims": [117], "tower_dims": [8]},
            "mmoe": {"n_experts": 8, "expert_dims": [16], "tower_dims": [8]},
            "ple": {
                "n_levels": 1,
                "n_specific_experts": 2,
                "n_shared_experts": 1,
                "expert_dims": [16],
                "tower_dims": [8],
            },
            "aitm": {"tower_dims": [32, 16], "head_dims": [8]},
            "esmm": {"ctr_dims": [16, 8], "cvr_dims": [16, 8]},
        },
        origin="Torch-RecHub examples/ranking/run_ali_ccp_multi_task.py "
        "(batch 1024, embed_dim 4, ESMM embed_dim 16)",
    ),
    "heavy": Size(
        name="heavy",
        batch_size=2048,
        embedding_dim=16,
        models={
            "shared_bottom": {"bottom_dims": [256, 128], "tower_dims": [64]},
            "mmoe": {"n_experts": 8, "expert_dims": [256, 128], "tower_dims": [64]},
            "ple": {
                "n_levels": 2,
                "n_specific_experts": 3,
                "n_shared_experts": 2,
                "expert_dims": [256, 128],
                "tower_dims": [64],
            },
            "aitm": {"tower_dims": [256, 128], "head_dims": [64]},
            "esmm": {"ctr_dims": [256, 128], "cvr_dims": [256, 128]},
        },
        origin="issue 3: 8 experts [256, 128], towers [64], embedding 16, "
        "batch 2048, Ali-CCP schema",
    ),
}


def ali_ccp_cardinalities() -> dict[str, int]:
    """Vocabulary size per Ali-CCP sparse field, from the simulator's defaults.

    The simulated source draws ids in these ranges with its default options
    (50 k users, 20 k items, 200 categories, shops = items / 8, brands =
    items / 12, intention nodes = 2 x categories); ``+ 1`` for the reserved
    id 0 of the encoder.
    """
    o = SimulatedOptions()
    shops, brands = max(1, o.n_items // 8), max(1, o.n_items // 12)
    intents = max(1, 2 * o.n_categories)
    largest_id = {
        "101": o.n_users,
        "121": 100,
        "122": 14,
        "124": 2,
        "125": 7,
        "126": 4,
        "127": 4,
        "128": 2,
        "129": 5,
        "205": o.n_items,
        "206": o.n_categories,
        "207": shops,
        "210": intents,
        "216": brands,
        "508": o.n_categories + 1,
        "509": shops + 1,
        "702": brands + 1,
        "853": intents + 1,
        "301": 3,
        "109_14": o.n_categories,
        "110_14": shops,
        "127_14": brands,
        "150_14": intents,
    }
    return {name: largest_id[name] + 1 for name in SPARSE}


# -- data ---------------------------------------------------------------------------
@dataclass
class Data:
    """The same synthetic split for both libraries."""

    schema: FeatureSchema
    table: TensorTable
    arrays: _rechub.Arrays


def make_data(rows: int, seed: int) -> Data:
    """Encoded-looking Ali-CCP rows: uniform ids, scaled dense, funnel labels."""
    rng = np.random.default_rng(seed)
    cards = ali_ccp_cardinalities()
    sizes = [cards[name] for name in SPARSE]
    sparse = np.empty((rows, len(SPARSE)), dtype=np.int32)
    for j, size in enumerate(sizes):
        sparse[:, j] = rng.integers(0, size, size=rows, dtype=np.int32)
    dense = rng.standard_normal((rows, len(DENSE)), dtype=np.float32)
    click = rng.random(rows) < 0.04
    buy = click & (rng.random(rows) < 0.10)
    labels = np.stack([click, buy], axis=1).astype(np.float32)
    schema = FeatureSchema(
        sparse=tuple(
            SparseFeature(n, c, 16) for n, c in zip(SPARSE, sizes, strict=True)
        ),
        dense=tuple(DenseFeature(n) for n in DENSE),
        tasks=tuple(TaskSpec(t) for t in TASKS),
        funnel=Funnel(click="ctr", conversion="ctcvr"),
    )
    table = TensorTable(
        sparse=torch.from_numpy(sparse),
        dense=torch.from_numpy(dense),
        labels=torch.from_numpy(labels),
        task_names=TASKS,
    )
    arrays = _rechub.Arrays(sparse, dense, labels, SPARSE, sizes, DENSE)
    return Data(schema, table, arrays)


# -- FLOPs --------------------------------------------------------------------------
def _mlp(in_dim: int, dims: Sequence[int]) -> int:
    flops, width = 0, in_dim
    for d in dims:
        flops += 2 * width * d
        width = d
    return flops


def _tower(in_dim: int, dims: Sequence[int]) -> int:
    return _mlp(in_dim, dims) + 2 * (dims[-1] if dims else in_dim)


def forward_matmul_flops(arch: str, model: MultiTaskModel) -> int:
    """Forward matmul FLOPs per sample of OUR model, from its layer shapes.

    See the module docstring for what counts; ``x 3`` gives a training step.
    """
    cfg: Any = model.config
    in_dim = int(model.embedding.output_dim)  # type: ignore[union-attr]
    n_tasks = len(model.task_names)
    if arch == "shared_bottom":
        return _mlp(in_dim, cfg.bottom_dims) + n_tasks * _tower(
            cfg.bottom_dims[-1], cfg.tower_dims
        )
    if arch == "mmoe":
        e, d = cfg.n_experts, cfg.expert_dims[-1]
        return (
            e * _mlp(in_dim, cfg.expert_dims)
            + n_tasks * 2 * in_dim * e  # gates
            + n_tasks * 2 * e * d  # gate-weighted mixtures
            + n_tasks * _tower(d, cfg.tower_dims)
        )
    if arch == "ple":
        es, eh, d = cfg.n_specific_experts, cfg.n_shared_experts, cfg.expert_dims[-1]
        flops, width = 0, in_dim
        for level in range(cfg.n_levels):
            n_all = n_tasks * es + eh
            flops += n_all * _mlp(width, cfg.expert_dims)
            flops += n_tasks * (2 * width * (es + eh) + 2 * (es + eh) * d)
            if level < cfg.n_levels - 1:  # shared gate and its mixture
                flops += 2 * width * n_all + 2 * n_all * d
            width = d
        return flops + n_tasks * _tower(d, cfg.tower_dims)
    if arch == "esmm":
        return _tower(in_dim, cfg.ctr_dims) + _tower(in_dim, cfg.cvr_dims)
    if arch == "aitm":
        d = cfg.tower_dims[-1]
        transfer = 2 * d * d + 3 * 2 * (2 * d * d) + 2 * 2 * d
        return (
            n_tasks * _mlp(in_dim, cfg.tower_dims)
            + (n_tasks - 1) * transfer
            + n_tasks * _tower(d, cfg.head_dims)
        )
    raise ValueError(f"no FLOP formula for {arch!r}")


def counted_forward_flops(model: MultiTaskModel, table: TensorTable) -> float:
    """Per-sample forward FLOPs measured by FlopCounterMode (cross-check)."""
    from torch.utils.flop_counter import FlopCounterMode

    rows = min(len(table), 64)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(table.sparse[:rows], table.dense[:rows])
    return counter.get_total_flops() / rows


# -- mtl_reco -----------------------------------------------------------------------
def task_weights(arch: str) -> dict[str, float]:
    """Fixed weights giving Torch-RecHub's objective (mean; ESMM: sum)."""
    w = 1.0 if arch == "esmm" else 1.0 / len(TASKS)
    return dict.fromkeys(TASKS, w)


def build_ours(arch: str, size: Size, data: Data, seed: int) -> MultiTaskModel:
    torch.manual_seed(seed)
    params = {**size.models[arch], "embedding_dim": size.embedding_for(arch)}
    return build_model(arch, data.schema, list(TASKS), params)


def trainer_config(batch_size: int, epochs: int, seed: int) -> TrainerConfig:
    return TrainerConfig(
        device="cpu",
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        progress=False,
        optimizer=OptimizerConfig(name="adam", lr=LR, weight_decay=WEIGHT_DECAY),
        early_stopping=EarlyStoppingConfig(patience=0),
    )


def make_strategy(arch: str, model: MultiTaskModel) -> LossWeighting:
    return build_strategy("fixed", model.task_names, {"weights": task_weights(arch)})


def run_ours(
    arch: str, size: Size, data: Data, epochs: int, warm_batches: int, seed: int
) -> dict[str, Any]:
    """Warm up, then time ``Trainer.fit`` over ``epochs`` epochs of the table."""
    model = build_ours(arch, size, data, seed)
    bs = size.batch_size
    warm = data.table.subset(torch.arange(min(len(data.table), warm_batches * bs)))
    Trainer(model, make_strategy(arch, model), trainer_config(bs, 1, seed)).fit(warm)
    trainer = Trainer(
        model, make_strategy(arch, model), trainer_config(bs, epochs, seed)
    )
    with _common.Timer() as timer:
        result = trainer.fit(data.table)
    samples = epochs * len(data.table)
    return {
        "seconds": timer.elapsed,
        "samples": samples,
        "samples_per_s": samples / timer.elapsed,
        "epoch_samples_per_s": [round(h["samples_per_s"], 1) for h in result.history],
        "final_train_loss": result.history[-1]["train_loss"]["total"],
    }


# -- Torch-RecHub -------------------------------------------------------------------
def rechub_runner(arch: str, size: Size, data: Data, seed: int) -> _rechub.RecHubRun:
    return _rechub.RecHubRun(
        arch=arch,
        arrays=data.arrays,
        embed_dim=size.embedding_for(arch),
        params=size.models[arch],
        batch_size=size.batch_size,
        lr=LR,
        weight_decay=WEIGHT_DECAY,
        seed=seed,
    )


def run_rechub(run: _rechub.RecHubRun, epochs: int) -> dict[str, Any]:
    seconds = run.train_epochs(epochs)
    samples = epochs * run.n_rows
    return {"seconds": seconds, "samples": samples, "samples_per_s": samples / seconds}


def run_rechub_prebuilt(run: _rechub.RecHubRun, epochs: int) -> dict[str, Any]:
    batches = run.prebuilt_batches()
    seconds = run.train_prebuilt(epochs, batches)
    samples = epochs * run.n_rows
    return {"seconds": seconds, "samples": samples, "samples_per_s": samples / seconds}


# -- one model ------------------------------------------------------------------------
VARIANTS = ("mtl_reco", "rechub", "rechub_prebuilt")


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["samples_per_s"] for r in runs]
    return {
        "samples_per_s": statistics.median(rates),
        "samples_per_s_best": max(rates),
        "samples_per_s_runs": [round(x, 1) for x in rates],
        "seconds_runs": [round(r["seconds"], 3) for r in runs],
        "samples_per_run": runs[0]["samples"],
        **({k: runs[-1][k] for k in ("epoch_samples_per_s",) if k in runs[-1]}),
    }


def bench_model(
    arch: str, size: Size, data: Data, args: argparse.Namespace
) -> dict[str, Any]:
    """Interleaved repetitions of the three variants for one architecture."""
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    n_params: dict[str, int] = {}
    rechub_trimmed = 0
    for rep in range(args.repeats):
        order = VARIANTS if rep % 2 == 0 else tuple(reversed(VARIANTS))
        hub = rechub_runner(arch, size, data, args.seed)
        try:
            hub.warm_up(args.warmup_batches)
            rechub_trimmed = hub.trimmed_rows
            n_params["rechub"] = hub.n_parameters()
            for variant in order:
                if variant == "mtl_reco":
                    res = run_ours(
                        arch, size, data, args.epochs, args.warmup_batches, args.seed
                    )
                elif variant == "rechub":
                    res = run_rechub(hub, args.epochs)
                else:
                    res = run_rechub_prebuilt(hub, args.epochs)
                runs[variant].append(res)
                print(
                    f"  [{size.name}] {arch:13s} rep {rep + 1}/{args.repeats} "
                    f"{variant:16s} {res['samples_per_s']:>11,.0f} samples/s "
                    f"({res['seconds']:.2f} s)",
                    flush=True,
                )
        finally:
            hub.close()
    model = build_ours(arch, size, data, args.seed)
    n_params["mtl_reco"] = sum(p.numel() for p in model.parameters())
    flops = forward_matmul_flops(arch, model)
    counted = counted_forward_flops(model, data.table)
    out: dict[str, Any] = {
        "size": size.name,
        "model": arch,
        "batch_size": size.batch_size,
        "embedding_dim": size.embedding_for(arch),
        "params": dict(size.models[arch]),
        "n_parameters": n_params,
        "rows": len(data.table),
        "epochs": args.epochs,
        "rechub_rows_trimmed": rechub_trimmed,
        "fwd_matmul_flops_per_sample": flops,
        "fwd_matmul_flops_per_sample_counted": counted,
        "train_flops_per_sample": 3 * flops,
    }
    for variant in VARIANTS:
        out[variant] = _summary(runs[variant])
    ours = out["mtl_reco"]["samples_per_s"]
    out["ratio"] = ours / out["rechub"]["samples_per_s"]
    out["ratio_vs_prebuilt"] = ours / out["rechub_prebuilt"]["samples_per_s"]
    # Ratio within each repetition (both measured minutes apart at most):
    # less sensitive to slow drifts of the machine's load than the medians.
    out["ratio_runs"] = [
        round(a["samples_per_s"] / b["samples_per_s"], 3)
        for a, b in zip(runs["mtl_reco"], runs["rechub"], strict=True)
    ]
    for variant in VARIANTS:
        rate = out[variant]["samples_per_s"]
        out[variant]["train_gflops"] = 3 * flops * rate / 1e9
    if arch == "esmm":
        out["note"] = (
            "Torch-RecHub's ESMM ignores the 8 dense features (its design); "
            "FLOPs are OUR model's"
        )
    return out


def add_shares(result: dict[str, Any], gemm_best: float) -> None:
    """Achieved training GFLOP/s as a share of the run's GEMM figure."""
    for variant in VARIANTS:
        result[variant]["gemm_share"] = result[variant]["train_gflops"] / gemm_best
    result["gemm_share"] = result["mtl_reco"]["gemm_share"]
    # Best-of figures: other load only ever slows a run down, so on a shared
    # machine the fastest repetitions are the closer estimate of a quiet one.
    best = {v: result[v]["samples_per_s_best"] for v in VARIANTS}
    result["ratio_best"] = best["mtl_reco"] / best["rechub"]
    result["gemm_share_best"] = (
        3 * result["fwd_matmul_flops_per_sample"] * best["mtl_reco"] / 1e9
    ) / gemm_best
    target = TARGETS.get(result["size"], {})
    met: dict[str, bool] = {}
    if "min_ratio" in target:
        met["ratio"] = result["ratio"] >= target["min_ratio"]
    if "min_gemm_share" in target:
        met["gemm_share"] = result["gemm_share"] >= target["min_gemm_share"]
    result["targets"] = {**target, "met": met, "all_met": all(met.values())}


# -- profile of our heavy MMoE step -------------------------------------------------
def _endless(table: TensorTable, bs: int, seed: int) -> Iterator[Batch]:
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield from table.batches(bs, shuffle=True, generator=gen)


#: Model parts the profile reports, by module class name (outermost wins).
PART_OF_CLASS = {
    "FeatureEmbedding": "embedding",
    "ExpertBank": "experts",
    "SoftmaxGate": "gates",
    "Tower": "towers",
    "MLP": "mlp",
    "InformationTransfer": "information_transfer",
}


class _Annotator:
    """Forward hooks that wrap the model's building blocks in record_function.

    Forward ops then carry the name of the model part that ran them (see
    :data:`PART_OF_CLASS`; an op inside nested blocks belongs to the
    outermost one, e.g. a tower's MLP counts as ``towers``); ops outside every
    block (gate mixtures, stacking, indexing) are ``mixing_and_glue``.
    Backward ops are attributed through the autograd sequence number that
    links each backward node to the forward op that created it.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.handles: list[Any] = []
        self.open: dict[int, list[Any]] = {}
        # PLE runs all experts of a level in one run_expert_banks call made
        # by the level itself, not through ExpertBank.forward: label it too.
        self._ple_runner = ple_module.run_expert_banks

        def run_banks(*args: Any, **kwargs: Any) -> Any:
            with torch.profiler.record_function("fwd.experts"):
                return self._ple_runner(*args, **kwargs)

        ple_module.run_expert_banks = run_banks
        for module in model.modules():
            part = PART_OF_CLASS.get(type(module).__name__)
            if part is None:
                continue
            self.handles.append(module.register_forward_pre_hook(self._enter(part)))
            self.handles.append(module.register_forward_hook(self._exit))

    def _enter(self, part: str) -> Any:
        def hook(module: torch.nn.Module, _inputs: Any) -> None:
            rf = torch.profiler.record_function(f"fwd.{part}")
            rf.__enter__()
            self.open.setdefault(id(module), []).append(rf)

        return hook

    def _exit(self, module: torch.nn.Module, _inputs: Any, _output: Any) -> None:
        self.open[id(module)].pop().__exit__(None, None, None)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        ple_module.run_expert_banks = self._ple_runner


PHASES = ("loader", "forward", "loss", "zero_grad", "backward", "optimizer")


def _training_step(
    model: MultiTaskModel,
    strategy: LossWeighting,
    opt: torch.optim.Optimizer,
    batches: Iterator[Batch],
    scope: Any,
) -> None:
    """One step as ``Trainer`` runs it; ``scope(phase)`` wraps each phase.

    Same calls as the trainer's loop (shuffled batch from the TensorTable,
    forward, per-task BCE-with-logits, auxiliary loss, ``zero_grad``,
    ``strategy.weighted_backward``, ``optimizer.step``) without its
    per-batch bookkeeping (loss sums, non-finite guard), which is tiny.
    """
    with scope("loader"):
        batch = next(batches)
    with scope("forward"):
        out = model(batch.sparse, batch.dense)
    with scope("loss"):
        losses = {
            t: F.binary_cross_entropy_with_logits(out[t].float(), batch.labels[:, i])
            for i, t in enumerate(TASKS)
        }
        aux = model.auxiliary_loss(out)
    with scope("zero_grad"):
        opt.zero_grad(set_to_none=True)
    with scope("backward"):
        strategy.weighted_backward(losses, aux)
    with scope("optimizer"):
        opt.step()
        strategy.after_step()


class _PhaseClock:
    """``scope`` for :func:`_training_step` that times each phase."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {p: [] for p in PHASES}
        self.record = True

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        if self.record:
            self.times[phase].append(time.perf_counter() - start)


def _profiler_scope(phase: str) -> Any:
    return torch.profiler.record_function(f"phase.{phase}")


def _ancestor(event: Any, prefix: str, outermost: bool = False) -> Any:
    found, node = None, event
    while node is not None:
        if node.name.startswith(prefix):
            found = node
            if not outermost:
                return found
        node = node.cpu_parent
    return found


def _part(event: Any, phase: str, seq_part: Mapping[int, str]) -> str:
    """Model part an op belongs to (see :class:`_Annotator`)."""
    if phase in ("forward", "loss"):
        fwd = _ancestor(event, "fwd.", outermost=True)
        if fwd is not None:
            return str(fwd.name[4:])
        return "mixing_and_glue" if phase == "forward" else "loss"
    if phase == "backward":
        node = _ancestor(event, "autograd::engine::evaluate_function:")
        if node is None:
            return "autograd_engine_and_python"
        if "AccumulateGrad" in node.name:
            return "accumulate_grad"
        return seq_part.get(node.sequence_nr, "other")
    return phase


GEMM_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"})
COPY_OPS = frozenset({"aten::copy_", "aten::cat", "aten::stack", "aten::clone"})
ACTIVATION_OPS = frozenset(
    {"aten::clamp_min", "aten::relu", "aten::threshold_backward", "aten::relu_"}
)
EMBEDDING_OPS = frozenset(
    {"aten::index_select", "aten::index_add_", "aten::scatter_add_"}
)


def _op_kind(name: str) -> str:
    if name in GEMM_OPS:
        return "matmul"
    if name in ACTIVATION_OPS:
        return "activation (relu fwd/bwd)"
    if name in COPY_OPS:
        return "copies/concat"
    if name in EMBEDDING_OPS:
        return "gather/scatter"
    if "adam" in name:
        return "optimizer kernel"
    if name.startswith("aten::"):
        return "other aten ops"
    return "python/dispatch overhead"


def profile_step(
    arch: str, size: Size, data: Data, steps: int, warm: int, seed: int
) -> dict[str, Any]:
    """Where the time of our training step goes.

    1. Plain timing of each phase (median over ``steps`` steps after
       ``warm``), with minor page faults per step.
    2. torch.profiler over ``max(2, steps // 2)`` steps: self CPU time by
       model part (forward and backward) and by kind of op.
    """
    from torch.profiler import ProfilerActivity, profile

    model = build_ours(arch, size, data, seed)
    trainer = Trainer(
        model, make_strategy(arch, model), trainer_config(size.batch_size, 1, seed)
    )
    opt, strategy = trainer.optimizer, trainer.strategy
    model.train()
    batches = _endless(data.table, size.batch_size, seed)

    clock = _PhaseClock()
    clock.record = False
    for _ in range(warm):
        _training_step(model, strategy, opt, batches, clock)
    clock.record = True
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        _training_step(model, strategy, opt, batches, clock)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / steps
    phase_ms = {k: 1e3 * statistics.median(v) for k, v in clock.times.items()}
    step_ms = sum(phase_ms.values())

    n_prof = max(2, steps // 2)
    annot = _Annotator(model)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(n_prof):
                _training_step(model, strategy, opt, batches, _profiler_scope)
    finally:
        annot.remove()
    events = [ev for ev in prof.events() if _ancestor(ev, "phase.") is not None]
    phase_of = {id(ev): _ancestor(ev, "phase.").name[6:] for ev in events}
    seq_part: dict[int, str] = {}
    for ev in events:
        if ev.sequence_nr >= 0 and phase_of[id(ev)] in ("forward", "loss"):
            seq_part.setdefault(ev.sequence_nr, _part(ev, phase_of[id(ev)], {}))
    by_part: dict[str, dict[str, float]] = {}
    by_kind: dict[str, float] = {}
    by_op: dict[str, float] = {}
    total = 0.0
    for ev in events:
        us = float(ev.self_cpu_time_total)
        phase = phase_of[id(ev)]
        row = by_part.setdefault(_part(ev, phase, seq_part), {})
        row[phase] = row.get(phase, 0.0) + us
        kind = _op_kind(ev.name)
        by_kind[kind] = by_kind.get(kind, 0.0) + us
        if ev.name.startswith("aten::"):
            by_op[ev.name] = by_op.get(ev.name, 0.0) + us
        total += us

    def ms(us: float) -> float:
        return round(us / n_prof / 1e3, 3)

    parts = sorted(by_part.items(), key=lambda kv: -sum(kv[1].values()))
    return {
        "model": arch,
        "size": size.name,
        "batch_size": size.batch_size,
        "threads": torch.get_num_threads(),
        "expert_layout": sorted(
            {str(m.layout) for m in model.modules() if hasattr(m, "layout")}
        ),
        "steps_timed": steps,
        "phase_ms_median": {k: round(v, 3) for k, v in phase_ms.items()},
        "phase_share": {k: round(v / step_ms, 4) for k, v in phase_ms.items()},
        "step_ms": round(step_ms, 3),
        "samples_per_s_from_step": size.batch_size / (step_ms / 1e3),
        "minor_page_faults_per_step": round(faults),
        "profiled_steps": n_prof,
        "profiled_step_ms": ms(total),
        "by_part_ms_per_step": {
            part: {k: ms(v) for k, v in row.items()} for part, row in parts
        },
        "by_part_share": {
            part: round(sum(row.values()) / total, 4) for part, row in parts
        },
        "by_op_kind_share": {
            k: round(v / total, 4)
            for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])
        },
        "top_ops_ms_per_step": {
            name: ms(us)
            for name, us in sorted(by_op.items(), key=lambda kv: -kv[1])[:12]
        },
    }


# -- driver ---------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny CI smoke run")
    parser.add_argument("--sizes", default="light,heavy", help="light,heavy")
    parser.add_argument("--models", default=",".join(ARCHS), help=",".join(ARCHS))
    parser.add_argument("--rows", type=int, default=None, help="rows per epoch")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved reps")
    parser.add_argument("--warmup-batches", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--gemm-n", type=int, default=None, help="GEMM size")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile our heavy training step (default: on unless --quick)",
    )
    parser.add_argument(
        "--profile-models", default="mmoe,ple", help="models to profile (heavy)"
    )
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--results-dir", default=None, help="output folder")
    parser.add_argument("--name", default=None, help="output file stem")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.profile_models = [
        m.strip() for m in args.profile_models.split(",") if m.strip()
    ]
    for s in args.sizes:
        if s not in SIZES:
            parser.error(f"unknown size {s!r}; choose from {sorted(SIZES)}")
    for m in [*args.models, *args.profile_models]:
        if m not in ARCHS:
            parser.error(f"unknown model {m!r}; choose from {ARCHS}")
    args.rows = args.rows or (1024 if quick else 131_072)
    args.epochs = args.epochs or (1 if quick else 2)
    args.warmup_batches = args.warmup_batches or (1 if quick else 8)
    args.gemm_n = args.gemm_n or (512 if quick else 2048)
    if args.profile is None:
        args.profile = not quick
    if quick:
        args.profile_steps = min(args.profile_steps, 4)
    args.name = args.name or (f"{NAME}_quick" if quick else NAME)
    return args


def effective_size(name: str, quick: bool) -> Size:
    """The size class; ``--quick`` keeps the layers but uses batch 256."""
    size = SIZES[name]
    if not quick:
        return size
    return Size(
        name=size.name,
        batch_size=256,
        embedding_dim=size.embedding_dim,
        models=size.models,
        embedding_dim_overrides=size.embedding_dim_overrides,
        origin=size.origin + " [quick: batch 256]",
    )


def gemm(args: argparse.Namespace) -> dict[str, Any]:
    res = _common.measure_gemm(
        n=args.gemm_n, warmup=1 if args.quick else 2, repeats=3 if args.quick else 7
    )
    print(
        f"GEMM n={res['n']} threads={res['threads']}: best "
        f"{res['best_gflops']:.1f} GFLOP/s, median {res['median_gflops']:.1f}",
        flush=True,
    )
    return res


def print_table(results: list[dict[str, Any]], gemm_best: float) -> None:
    head = (
        f"{'size':6s} {'model':13s} {'mtl_reco/s':>11s} {'rechub/s':>10s} "
        f"{'prebuilt/s':>10s} {'ratio':>6s} {'GFLOP/s':>8s} {'GEMM%':>6s} targets"
    )
    print(f"\nGEMM reference (best): {gemm_best:.1f} GFLOP/s\n{head}")
    for r in results:
        met = r["targets"]["met"]
        flags = ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in met.items())
        print(
            f"{r['size']:6s} {r['model']:13s} "
            f"{r['mtl_reco']['samples_per_s']:>11,.0f} "
            f"{r['rechub']['samples_per_s']:>10,.0f} "
            f"{r['rechub_prebuilt']['samples_per_s']:>10,.0f} "
            f"{r['ratio']:>5.1f}x {r['mtl_reco']['train_gflops']:>8.1f} "
            f"{100 * r['gemm_share']:>5.0f}% {flags}"
        )


def print_profile(prof: Mapping[str, Any]) -> None:
    print(
        f"\nprofile {prof['size']} {prof['model']} (batch {prof['batch_size']}, "
        f"{prof['threads']} threads, expert layout "
        f"{'/'.join(prof['expert_layout']) or '-'}): "
        f"step {prof['step_ms']:.1f} ms = "
        f"{prof['samples_per_s_from_step']:,.0f} samples/s, "
        f"{prof['minor_page_faults_per_step']:,} page faults/step"
    )
    phases = ", ".join(
        f"{k} {v:.1f} ms ({100 * prof['phase_share'][k]:.0f}%)"
        for k, v in prof["phase_ms_median"].items()
    )
    print(f"  phases (plain timing): {phases}")
    print(f"  by model part (profiler, {prof['profiled_step_ms']:.1f} ms/step):")
    for part, row in prof["by_part_ms_per_step"].items():
        cols = ", ".join(f"{k} {v:.1f}" for k, v in row.items())
        share = 100 * prof["by_part_share"][part]
        print(f"    {part:24s} {share:5.1f}%  (ms/step: {cols})")
    kinds = ", ".join(
        f"{k} {100 * v:.0f}%" for k, v in prof["by_op_kind_share"].items()
    )
    print(f"  by op kind: {kinds}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        rechub_version = _rechub.rechub_version()
    except ImportError as exc:
        print(
            f"Torch-RecHub is not installed ({exc}); install the bench extra: "
            'pip install -e ".[bench]"',
            file=sys.stderr,
        )
        return 2
    machine = _common.machine_info()
    print(
        f"{NAME}: {machine['cpu_model']}, {machine['usable_cpus']} CPUs, torch "
        f"{machine['torch']} ({machine['torch_threads']} threads), Torch-RecHub "
        f"{rechub_version}, load {machine['load_average']}",
        flush=True,
    )
    gemms = [gemm(args)]
    results: list[dict[str, Any]] = []
    loaders: dict[str, Any] = {}
    profile_result: dict[str, Any] | None = None
    with _common.Timer() as wall:
        data = make_data(args.rows, args.seed)
        print(
            f"data: {args.rows:,} rows x ({len(SPARSE)} sparse + {len(DENSE)} "
            f"dense), {args.epochs} timed epoch(s) per run, {args.repeats} "
            "repetition(s)",
            flush=True,
        )
        for size_name in args.sizes:
            size = effective_size(size_name, args.quick)
            for arch in args.models:
                results.append(bench_model(arch, size, data, args))
                if size_name not in loaders and arch != "esmm":
                    hub = rechub_runner(arch, size, data, args.seed)
                    try:
                        seconds = hub.loader_only(1)
                        loaders[size_name] = {
                            "batch_size": size.batch_size,
                            "samples_per_s": hub.n_rows / seconds,
                        }
                    finally:
                        hub.close()
                    print(
                        f"  [{size_name}] Torch-RecHub DataLoader alone: "
                        f"{loaders[size_name]['samples_per_s']:,.0f} samples/s",
                        flush=True,
                    )
            gemms.append(gemm(args))
        if args.profile and "heavy" in args.sizes:
            size = effective_size("heavy", args.quick)
            profile_result = {}
            for arch in args.profile_models:
                profile_result[arch] = profile_step(
                    arch, size, data, args.profile_steps, 3, args.seed
                )
                print_profile(profile_result[arch])
    gemm_all = _common.combine_gemm(gemms)
    for r in results:
        add_shares(r, gemm_all["best_gflops"])
    print_table(results, gemm_all["best_gflops"])
    by_size: dict[str, dict[str, Any]] = {}
    for r in results:
        entry = by_size.setdefault(
            r["size"], {"targets": TARGETS.get(r["size"], {}), "models": {}}
        )
        entry["models"][r["model"]] = r["targets"]["all_met"]
    for entry in by_size.values():
        entry["all_met"] = all(entry["models"].values())
    machine_end = _common.load_average()
    payload = {
        "config": {
            "quick": args.quick,
            "rows": args.rows,
            "epochs": args.epochs,
            "repeats": args.repeats,
            "warmup_batches": args.warmup_batches,
            "seed": args.seed,
            "threads": torch.get_num_threads(),
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "loss_weighting": "fixed (mean of task losses; ESMM: sum)",
            "sizes": {
                s: {
                    "batch_size": effective_size(s, args.quick).batch_size,
                    "embedding_dim": SIZES[s].embedding_dim,
                    "embedding_dim_overrides": dict(SIZES[s].embedding_dim_overrides),
                    "models": {m: SIZES[s].models[m] for m in args.models},
                    "origin": effective_size(s, args.quick).origin,
                }
                for s in args.sizes
            },
            "vocab_sizes": ali_ccp_cardinalities(),
        },
        "flop_formula": (
            "train FLOPs/sample = 3 x forward matmul FLOPs of OUR model; forward "
            "= sum of 2*fan_in*fan_out over every Linear/expert layer/gate/"
            "tower/head (AITM projections on 2 rows) + 2*G*E*d per gate mixture; "
            "element-wise ops, BatchNorm, softmax and embedding lookups count 0"
        ),
        "machine": machine,
        "load_average_end": machine_end,
        "rechub_version": rechub_version,
        "gemm": gemm_all,
        "results": results,
        "rechub_loader_only": loaders,
        "targets": by_size,
        "profile": profile_result,
        "wall_s": round(wall.elapsed, 1),
        "peak_rss_mb": _common.peak_rss_mb(),
    }
    path = _common.write_result(
        args.name,
        payload,
        None if args.results_dir is None else _common.Path(args.results_dir),
    )
    print(f"\nwrote {path} ({wall.elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
