"""Model sizes and data of the throughput benchmarks (``train_throughput.py``,
``gpu_check.py``), and their matmul FLOPs.

**light** is Torch-RecHub's Ali-CCP example (embedding 4, ESMM 16); **heavy**
has embedding 16 and 8 experts of [256, 128] (PLE: 2 levels of 3 per task + 2
shared), towers / heads [64]. The rows are Ali-CCP shaped: 23 sparse fields
with the vocabularies the simulator draws by default, 8 dense, ``ctr`` and
``ctcvr``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mtl_reco import schema as fs
from mtl_reco.modeling.data import TensorTable

ARCHS = ("shared_bottom", "mmoe", "ple", "aitm", "esmm")
EXPERT_MODELS = ("mmoe", "ple")  # the models whose experts have a layout option
TASKS = ("ctr", "ctcvr")
_USERS, _ITEMS, _CATS = 50_000, 20_000, 200
_SHOPS, _BRANDS, _INTENTS = _ITEMS // 8, _ITEMS // 12, 2 * _CATS
#: Largest id per Ali-CCP sparse field (vocabulary = largest + 1).
LARGEST_ID = {
    "101": _USERS, "121": 100, "122": 14, "124": 2, "125": 7, "126": 4,
    "127": 4, "128": 2, "129": 5, "205": _ITEMS, "206": _CATS, "207": _SHOPS,
    "210": _INTENTS, "216": _BRANDS, "508": _CATS + 1, "509": _SHOPS + 1,
    "702": _BRANDS + 1, "853": _INTENTS + 1, "301": 3, "109_14": _CATS,
    "110_14": _SHOPS, "127_14": _BRANDS, "150_14": _INTENTS,
}  # fmt: skip
SPARSE = tuple(LARGEST_ID)
DENSE = tuple("D" + f for f in (*SPARSE[-4:], "508", "509", "702", "853"))

_HEAVY = [256, 128]
SIZES: dict[str, dict[str, Any]] = {
    "light": {
        "batch_size": 1024,
        "embedding_dim": {"esmm": 16, "*": 4},
        "models": {
            "shared_bottom": {"bottom_dims": [117], "tower_dims": [8]},
            "mmoe": {"n_experts": 8, "expert_dims": [16], "tower_dims": [8]},
            "ple": {"n_levels": 1, "n_specific_experts": 2, "n_shared_experts": 1,
                    "expert_dims": [16], "tower_dims": [8]},
            "aitm": {"tower_dims": [32, 16], "head_dims": [8]},
            "esmm": {"ctr_dims": [16, 8], "cvr_dims": [16, 8]},
        },
    },
    "heavy": {
        "batch_size": 2048,
        "embedding_dim": {"*": 16},
        "models": {
            "shared_bottom": {"bottom_dims": _HEAVY, "tower_dims": [64]},
            "mmoe": {"n_experts": 8, "expert_dims": _HEAVY, "tower_dims": [64]},
            "ple": {"n_levels": 2, "n_specific_experts": 3, "n_shared_experts": 2,
                    "expert_dims": _HEAVY, "tower_dims": [64]},
            "aitm": {"tower_dims": _HEAVY, "head_dims": [64]},
            "esmm": {"ctr_dims": _HEAVY, "cvr_dims": _HEAVY},
        },
    },
}  # fmt: skip


def embedding_dim(size: str, arch: str) -> int:
    dims = SIZES[size]["embedding_dim"]
    return int(dims.get(arch, dims["*"]))


def model_params(size: str, arch: str) -> dict[str, Any]:
    """The model config of ``arch`` at ``size`` (embedding size included)."""
    return {**SIZES[size]["models"][arch], "embedding_dim": embedding_dim(size, arch)}


def ali_ccp_like(rows: int, seed: int) -> tuple[fs.FeatureSchema, TensorTable]:
    """Encoded-looking rows: uniform ids, standard-normal dense, funnel labels."""
    rng = np.random.default_rng(seed)
    sizes = [LARGEST_ID[f] + 1 for f in SPARSE]
    sparse = np.stack([rng.integers(0, n, rows, dtype=np.int32) for n in sizes], 1)
    dense = rng.standard_normal((rows, len(DENSE)), dtype=np.float32)
    click = rng.random(rows) < 0.04
    labels = np.stack([click, click & (rng.random(rows) < 0.10)], 1).astype(np.float32)
    fields = zip(SPARSE, sizes, strict=True)
    schema = fs.FeatureSchema(
        sparse=tuple(fs.SparseFeature(f, n, 16) for f, n in fields),
        dense=tuple(fs.DenseFeature(f) for f in DENSE),
        tasks=tuple(fs.TaskSpec(t) for t in TASKS), funnel=fs.Funnel("ctr", "ctcvr"),
    )  # fmt: skip
    arrays = (torch.from_numpy(a) for a in (sparse, dense, labels))
    return schema, TensorTable(*arrays, task_names=TASKS)


def _mlp(width: int, dims: Sequence[int]) -> int:
    flops = 0
    for d in dims:
        flops, width = flops + 2 * width * d, d
    return flops


def _tower(width: int, dims: Sequence[int]) -> int:
    return _mlp(width, dims) + 2 * (dims[-1] if dims else width)


def forward_matmul_flops(arch: str, params: Mapping[str, Any], schema: Any) -> int:
    """Forward matmul FLOPs per sample, from the layer shapes of ``params``.

    ``2 * fan_in * fan_out`` per Linear / expert layer / gate / tower / head,
    ``2 * E * d`` per gate mixture, AITM's projections on its 2 stacked rows;
    element-wise ops, softmax and embedding lookups count 0. A training step
    costs 3x that (forward, gradients of inputs and of weights).
    """
    p, t = params, len(schema.tasks)
    width = len(schema.sparse) * p["embedding_dim"] + len(schema.dense)
    if arch == "shared_bottom":
        towers = _tower(p["bottom_dims"][-1], p["tower_dims"])
        return _mlp(width, p["bottom_dims"]) + t * towers
    if arch == "mmoe":
        e, d = p["n_experts"], p["expert_dims"][-1]
        gates = t * (2 * width * e + 2 * e * d) + t * _tower(d, p["tower_dims"])
        return e * _mlp(width, p["expert_dims"]) + gates
    if arch == "ple":
        es, eh, d = p["n_specific_experts"], p["n_shared_experts"], p["expert_dims"][-1]
        flops, n_all = 0, t * es + eh
        for level in range(p["n_levels"]):
            flops += n_all * _mlp(width, p["expert_dims"])
            flops += t * (2 * width * (es + eh) + 2 * (es + eh) * d)
            if level < p["n_levels"] - 1:  # the shared gate and its mixture
                flops += 2 * width * n_all + 2 * n_all * d
            width = d
        return flops + t * _tower(d, p["tower_dims"])
    if arch == "esmm":
        return _tower(width, p["ctr_dims"]) + _tower(width, p["cvr_dims"])
    if arch == "aitm":
        d = p["tower_dims"][-1]
        transfer = 2 * d * d + 3 * 2 * (2 * d * d) + 2 * 2 * d
        heads = t * _tower(d, p["head_dims"])
        return t * _mlp(width, p["tower_dims"]) + (t - 1) * transfer + heads
    raise ValueError(f"no FLOP formula for {arch!r}")
