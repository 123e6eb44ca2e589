"""Independent reference forwards of the five architectures (test helper).

Written from the papers' equations with plain torch operations (``@``,
``softmax``, ``sigmoid``, the activation functions), reading a model's
parameters by their state-dict names. Nothing here imports
``mtl_reco.modeling.layers`` or calls a model's modules: the golden tests
compare a model against these functions, so they must not share its code.

Conventions the reference takes from the model's documented contract (they
are labelling choices, not formulas): the embedding layout of
``FeatureEmbedding`` (one table per distinct embedding size, in order of
first appearance, fields of a table stacked row-wise; output = embeddings
grouped by size, then the raw dense values), the parameter names, and the
order of the experts a PLE gate weighs (task gate: own experts then shared;
shared gate: every task's experts in task order, then the shared experts).

Every function takes ``params``: a mapping from state-dict name to tensor
(pass ``dict(model.named_parameters())`` so that autograd reaches the
model's own leaves).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import torch
from torch.nn import functional as F

from mtl_reco.schema import FeatureSchema

Params = Mapping[str, torch.Tensor]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "tanh": torch.tanh,
}


def linear(params: Params, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """``x W^T + b`` with ``prefix.weight`` / ``prefix.bias``."""
    return x @ params[f"{prefix}.weight"].T + params[f"{prefix}.bias"]


def _indexed(params: Params, pattern: str) -> list[int]:
    """Sorted integers ``i`` of the names matching ``pattern`` (one group)."""
    regex = re.compile(pattern)
    found = {int(m.group(1)) for name in params if (m := regex.fullmatch(name))}
    return sorted(found)


def embed(
    params: Params, schema: FeatureSchema, sparse: torch.Tensor, dense: torch.Tensor
) -> torch.Tensor:
    """The input vector: each field's embedding (grouped by size) then dense."""
    groups: dict[int, list[int]] = {}
    for j, feat in enumerate(schema.sparse):
        groups.setdefault(feat.embedding_dim, []).append(j)
    parts = []
    for g, fields in enumerate(groups.values()):
        table = params[f"embedding.tables.{g}"]
        first_row = 0
        for j in fields:
            parts.append(table[first_row + sparse[:, j].long()])
            first_row += schema.sparse[j].cardinality
    parts.append(dense.to(parts[0].dtype))
    return torch.cat(parts, dim=1)


def mlp(params: Params, prefix: str, x: torch.Tensor, act: str) -> torch.Tensor:
    """``act(... act(x W_1^T + b_1) ...)`` over ``prefix.layers.<i>`` (no dropout)."""
    layers = _indexed(params, re.escape(prefix) + r"\.layers\.(\d+)\.weight")
    for i in layers:
        x = ACTIVATIONS[act](linear(params, f"{prefix}.layers.{i}", x))
    return x


def tower(params: Params, prefix: str, x: torch.Tensor, act: str) -> torch.Tensor:
    """An MLP then a scalar linear head: ``(B,)``."""
    hidden = mlp(params, f"{prefix}.mlp", x, act)
    return linear(params, f"{prefix}.head", hidden)[:, 0]


def experts(params: Params, prefix: str, x: torch.Tensor, act: str) -> torch.Tensor:
    """``E`` expert MLPs with weights ``prefix.weights.<l>`` ``(E, out, in)``.

    Returns ``(B, E, d)``; expert ``e`` is ``act(... act(x W_1[e]^T + b_1[e]))``.
    """
    n_layers = len(_indexed(params, re.escape(prefix) + r"\.weights\.(\d+)"))
    n_experts = params[f"{prefix}.weights.0"].shape[0]
    outs = []
    for e in range(n_experts):
        h = x
        for layer in range(n_layers):
            w = params[f"{prefix}.weights.{layer}"][e]
            b = params[f"{prefix}.biases.{layer}"][e]
            h = ACTIVATIONS[act](h @ w.T + b)
        outs.append(h)
    return torch.stack(outs, dim=1)


def gate(params: Params, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """Softmax gate ``softmax(x W^T + b)`` over the experts: ``(B, E)``."""
    return torch.softmax(linear(params, f"{prefix}.linear", x), dim=-1)


def mix(weights: torch.Tensor, expert_out: torch.Tensor) -> torch.Tensor:
    """``sum_e weights[:, e] * expert_out[:, e]``: ``(B, d)``."""
    return (weights.unsqueeze(-1) * expert_out).sum(dim=1)


def shared_bottom(
    params: Params,
    schema: FeatureSchema,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    act: str = "relu",
) -> dict[str, torch.Tensor]:
    """Caruana 1997: ``tower_t(bottom(x))``."""
    shared = mlp(params, "bottom", embed(params, schema, sparse, dense), act)
    return {
        task.name: tower(params, f"towers.{t}", shared, act)
        for t, task in enumerate(schema.tasks)
    }


def mmoe(
    params: Params,
    schema: FeatureSchema,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    act: str = "relu",
) -> dict[str, torch.Tensor]:
    """Ma et al. 2018: ``y_t = tower_t(sum_e softmax(W_t x)_e f_e(x))``."""
    x = embed(params, schema, sparse, dense)
    shared = experts(params, "experts", x, act)
    return {
        task.name: tower(
            params, f"towers.{t}", mix(gate(params, f"gates.{t}", x), shared), act
        )
        for t, task in enumerate(schema.tasks)
    }


def ple(
    params: Params,
    schema: FeatureSchema,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    act: str = "relu",
    record: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Tang et al. 2020: stacked CGC levels, towers on the final task mixtures.

    Level ``l`` with task inputs ``x_t`` and shared input ``s``: task ``t``'s
    output mixes its own experts ``E_t(x_t)`` and the shared experts
    ``E_s(s)`` with the gate ``softmax(W_t x_t)``; a non-final level's
    shared output mixes every expert ``[E_1(x_1), ..., E_T(x_T), E_s(s)]``
    with ``softmax(W_s s)``. Level 0 reads the embedding everywhere; level
    ``l + 1`` reads task ``t``'s output of level ``l`` for task ``t``.

    ``record`` (optional) receives every gate's weights, keyed
    ``level<l>.task<t>`` and ``level<l>.shared``.
    """
    x = embed(params, schema, sparse, dense)
    n_tasks = len(schema.tasks)
    levels = _indexed(params, r"levels\.(\d+)\.shared\.weights\.0")
    task_in = [x] * n_tasks
    shared_in = x
    for level in levels:
        pre = f"levels.{level}"
        own = [
            experts(params, f"{pre}.specific.{t}", task_in[t], act)
            for t in range(n_tasks)
        ]
        common = experts(params, f"{pre}.shared", shared_in, act)
        gates = {
            f"task{t}": gate(params, f"{pre}.task_gates.{t}", task_in[t])
            for t in range(n_tasks)
        }
        task_out = [
            mix(gates[f"task{t}"], torch.cat([own[t], common], dim=1))
            for t in range(n_tasks)
        ]
        if level != levels[-1]:
            gates["shared"] = gate(params, f"{pre}.shared_gate", shared_in)
            shared_in = mix(gates["shared"], torch.cat([*own, common], dim=1))
        if record is not None:
            record.update({f"level{level}.{k}": v for k, v in gates.items()})
        task_in = task_out
    return {
        task.name: tower(params, f"towers.{t}", task_in[t], act)
        for t, task in enumerate(schema.tasks)
    }


def product_logit(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``logit(sigmoid(a) * sigmoid(b))`` from the product's probability."""
    p = torch.sigmoid(a) * torch.sigmoid(b)
    return torch.log(p) - torch.log1p(-p)


def esmm(
    params: Params,
    schema: FeatureSchema,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    act: str = "relu",
    cvr_output: str = "cvr",
) -> dict[str, torch.Tensor]:
    """Ma et al. 2018 (SIGIR): pCTCVR = pCTR x pCVR, both towers on ``x``."""
    assert schema.funnel is not None
    x = embed(params, schema, sparse, dense)
    ctr = tower(params, "ctr_tower", x, act)
    cvr = tower(params, "cvr_tower", x, act)
    return {
        schema.funnel.click: ctr,
        schema.funnel.conversion: product_logit(ctr, cvr),
        cvr_output: cvr,
    }


def information_transfer(
    params: Params, prefix: str, previous: torch.Tensor, own: torch.Tensor, act: str
) -> torch.Tensor:
    """Xi et al. 2021, the AIT module.

    ``p = act(W previous + b)``, ``q = own``; for ``u in {p, q}`` the score
    ``<h1(u), h2(u)> / sqrt(d)``; the output is ``sum_u softmax(scores)_u h3(u)``.
    """
    p = ACTIVATIONS[act](linear(params, f"{prefix}.transfer.0", previous))
    d = own.shape[1]
    candidates = [p, own]
    scores = torch.stack(
        [
            (linear(params, f"{prefix}.h1", u) * linear(params, f"{prefix}.h2", u)).sum(
                1
            )
            / math.sqrt(d)
            for u in candidates
        ],
        dim=1,
    )
    weights = torch.softmax(scores, dim=1)
    return sum(
        weights[:, k : k + 1] * linear(params, f"{prefix}.h3", u)
        for k, u in enumerate(candidates)
    )


def aitm(
    params: Params,
    schema: FeatureSchema,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    act: str = "relu",
) -> dict[str, torch.Tensor]:
    """Xi et al. 2021: ``z_0 = q_0``, ``z_t = AIT_t(z_{t-1}, q_t)``, ``head_t(z_t)``.

    ``q_t`` is task ``t``'s tower (an MLP) on the input vector.
    """
    x = embed(params, schema, sparse, dense)
    out = {}
    fused = None
    for t, task in enumerate(schema.tasks):
        own = mlp(params, f"towers.{t}", x, act)
        fused = (
            own
            if fused is None
            else information_transfer(params, f"transfers.{t - 1}", fused, own, act)
        )
        out[task.name] = tower(params, f"heads.{t}", fused, act)
    return out


def aitm_calibrator(
    outputs: Mapping[str, torch.Tensor], task_names: Sequence[str], alpha: float
) -> torch.Tensor:
    """``alpha * sum_t mean(max(p_t - p_{t-1}, 0))`` with ``p = sigmoid(logit)``."""
    probs = [torch.sigmoid(outputs[name]) for name in task_names]
    return alpha * sum(
        torch.clamp(probs[t] - probs[t - 1], min=0).mean() for t in range(1, len(probs))
    )


REFERENCES: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    "shared_bottom": shared_bottom,
    "mmoe": mmoe,
    "ple": ple,
    "esmm": esmm,
    "aitm": aitm,
}
"""The reference forward of each architecture, by registry name."""
