"""Golden forward and gradient of every architecture against an independent reference.

Each case builds a small seeded model through the registry, gives every
parameter a seeded random value (large enough that gates are far from
uniform and every path matters), runs it on a random batch and compares:

* its outputs with the reference forward of :mod:`.reference` (written from
  the papers' equations with plain torch operations, reading the model's
  parameters by state-dict name), in float64 and in float32;
* the gradient of a fixed scalar loss (a seeded linear combination of every
  output, plus the model's auxiliary loss) w.r.t. every parameter with the
  reference's autograd gradient of the same loss.

Nothing expected is copied from the implementation: the reference computes
it from the same parameters.
"""

from __future__ import annotations

import pytest
import torch

from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.schema import (
    DenseFeature,
    FeatureSchema,
    Funnel,
    SparseFeature,
    TaskSpec,
)

from . import reference

# Two embedding sizes (4, 3, 4): two tables, fields of size 4 first in the input.
SPARSE = (
    SparseFeature("user", 11, 4),
    SparseFeature("item", 7, 3),
    SparseFeature("cat", 5, 4),
)
DENSE = (DenseFeature("d0"), DenseFeature("d1"))


def golden_schema(n_tasks: int) -> FeatureSchema:
    """Inputs above; 2 tasks ``ctr -> ctcvr`` or 3 tasks ``view, click -> buy``."""
    if n_tasks == 2:
        tasks, funnel = ("ctr", "ctcvr"), Funnel("ctr", "ctcvr")
    else:
        tasks, funnel = ("view", "click", "buy"), Funnel("click", "buy")
    return FeatureSchema(
        sparse=SPARSE,
        dense=DENSE,
        tasks=tuple(TaskSpec(t) for t in tasks),
        funnel=funnel,
    )


#: (model, number of tasks, hyperparameters); every path of every model at least once.
CASES: list[tuple[str, int, dict[str, object]]] = [
    ("shared_bottom", 2, {"bottom_dims": [8, 6], "tower_dims": [4]}),
    ("shared_bottom", 3, {"bottom_dims": [8], "tower_dims": [], "activation": "tanh"}),
    ("mmoe", 2, {"n_experts": 3, "expert_dims": [8, 6], "tower_dims": [4]}),
    ("mmoe", 3, {"n_experts": 4, "expert_dims": [8], "tower_dims": [4]}),
    (
        "mmoe",
        2,
        {"n_experts": 2, "expert_dims": [8, 6], "tower_dims": [], "activation": "gelu"},
    ),
    (
        "ple",
        2,
        {
            "n_levels": 2,
            "n_specific_experts": 2,
            "n_shared_experts": 1,
            "expert_dims": [8, 6],
            "tower_dims": [4],
        },
    ),
    (
        "ple",
        3,
        {
            "n_levels": 3,
            "n_specific_experts": 1,
            "n_shared_experts": 2,
            "expert_dims": [8],
            "tower_dims": [4],
        },
    ),
    (
        "ple",
        3,
        {
            "n_levels": 2,
            "n_specific_experts": 2,
            "n_shared_experts": 2,
            "expert_dims": [8, 6],
            "tower_dims": [],
            "activation": "silu",
        },
    ),
    (
        "ple",
        2,
        {
            "n_levels": 1,
            "n_specific_experts": 2,
            "n_shared_experts": 2,
            "expert_dims": [6],
            "tower_dims": [4],
        },
    ),
    ("esmm", 2, {"ctr_dims": [8, 6], "cvr_dims": [8]}),
    (
        "esmm",
        2,
        {"ctr_dims": [8], "cvr_dims": [], "activation": "silu", "cvr_output": "pcvr"},
    ),
    ("aitm", 2, {"tower_dims": [8, 6], "head_dims": [4], "calibrator_alpha": 0.6}),
    (
        "aitm",
        3,
        {
            "tower_dims": [8],
            "head_dims": [],
            "calibrator_alpha": 1.3,
            "activation": "tanh",
        },
    ),
]
IDS = [f"{name}-{n}tasks-{i}" for i, (name, n, _) in enumerate(CASES)]
N_ROWS = 16
#: Tolerances: float64 on both sides; float32 model against the float64 reference.
EXACT = {"rtol": 1e-9, "atol": 1e-10}
FLOAT32 = {"rtol": 1e-5, "atol": 1e-6}
#: AITM's calibrator is computed in float32 by design.
AUX = {"rtol": 1e-5, "atol": 1e-8}


def golden_batch(
    schema: FeatureSchema, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (row 0: ids 0, row 1: each field's largest id), dense values."""
    gen = torch.Generator().manual_seed(seed)
    sparse = torch.stack(
        [
            torch.randint(0, f.cardinality, (N_ROWS,), generator=gen)
            for f in schema.sparse
        ],
        dim=1,
    )
    sparse[0] = 0
    sparse[1] = torch.tensor([f.cardinality - 1 for f in schema.sparse])
    dense = torch.randn(N_ROWS, len(schema.dense), generator=gen, dtype=torch.float64)
    return sparse, dense


def golden_model(
    name: str, n_tasks: int, config: dict[str, object], seed: int = 0
) -> MultiTaskModel:
    """The model, every parameter redrawn from N(0, 0.6^2) under ``seed``, float64."""
    torch.manual_seed(seed)
    model = build_model(name, golden_schema(n_tasks), None, config).double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(0.6 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def reference_forward(
    name: str,
    config: dict[str, object],
    schema: FeatureSchema,
    params: dict[str, torch.Tensor],
    sparse: torch.Tensor,
    dense: torch.Tensor,
) -> dict[str, torch.Tensor]:
    act = str(config.get("activation", "relu"))
    extra = {"cvr_output": config["cvr_output"]} if "cvr_output" in config else {}
    return reference.REFERENCES[name](params, schema, sparse, dense, act, **extra)


def reference_aux(
    name: str, config: dict[str, object], schema: FeatureSchema, outputs
) -> torch.Tensor | None:
    """AITM's calibrator on a funnel (both golden schemas declare one); else none."""
    alpha = float(config.get("calibrator_alpha", 0.6))
    if name != "aitm" or alpha == 0:
        return None
    return reference.aitm_calibrator(outputs, [t.name for t in schema.tasks], alpha)


def scalar_loss(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """A fixed linear combination of every output (seeded weights)."""
    gen = torch.Generator().manual_seed(123)
    total = torch.zeros((), dtype=torch.float64)
    for name in sorted(outputs):
        coef = torch.randn(N_ROWS, generator=gen, dtype=torch.float64)
        total = total + (coef * outputs[name].double()).sum()
    return total


@pytest.fixture(autouse=True)
def _single_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize(("name", "n_tasks", "config"), CASES, ids=IDS)
def test_forward_matches_reference(name, n_tasks, config):
    model = golden_model(name, n_tasks, config)
    schema = golden_schema(n_tasks)
    sparse, dense = golden_batch(schema)
    params = dict(model.named_parameters())
    with torch.no_grad():
        got = model(sparse, dense)
        expected = reference_forward(name, config, schema, params, sparse, dense)
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key].shape == (N_ROWS,)
        torch.testing.assert_close(
            got[key], value, **EXACT, msg=lambda m, k=key: f"{k}: {m}"
        )
        # the check is not vacuous: the outputs vary across rows
        assert float(value.std()) > 1e-3, key
    # eval mode (no dropout anyway) computes the same function
    model.eval()
    with torch.no_grad():
        for key, value in model(sparse, dense).items():
            torch.testing.assert_close(value, expected[key], **EXACT)


@pytest.mark.parametrize(("name", "n_tasks", "config"), CASES, ids=IDS)
def test_float32_forward_matches_reference(name, n_tasks, config):
    model = golden_model(name, n_tasks, config)
    schema = golden_schema(n_tasks)
    sparse, dense = golden_batch(schema)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    model.float()
    with torch.no_grad():
        got = model(sparse.to(torch.int32), dense.float())
        expected = reference_forward(name, config, schema, params, sparse, dense)
    for key, value in expected.items():
        assert got[key].dtype == torch.float32
        torch.testing.assert_close(got[key].double(), value, **FLOAT32)


@pytest.mark.parametrize(("name", "n_tasks", "config"), CASES, ids=IDS)
def test_gradient_matches_reference(name, n_tasks, config):
    model = golden_model(name, n_tasks, config)
    schema = golden_schema(n_tasks)
    sparse, dense = golden_batch(schema, seed=1)
    params = dict(model.named_parameters())
    leaves = list(params.values())

    outputs = model(sparse, dense)
    ref_outputs = reference_forward(name, config, schema, params, sparse, dense)
    got = torch.autograd.grad(scalar_loss(outputs), leaves, retain_graph=True)
    expected = torch.autograd.grad(scalar_loss(ref_outputs), leaves, retain_graph=True)
    for pname, g, e in zip(params, got, expected, strict=True):
        assert float(e.abs().sum()) > 0, f"{pname}: the loss does not reach it"
        torch.testing.assert_close(
            g.to_dense(), e, **EXACT, msg=lambda m, p=pname: f"gradient of {p}: {m}"
        )

    aux = model.auxiliary_loss(outputs)
    ref_aux = reference_aux(name, config, schema, ref_outputs)
    assert (aux is None) == (ref_aux is None)
    if aux is None or ref_aux is None:
        return
    # the calibrator runs in float32 (like the task losses), whatever the logits
    assert float(ref_aux.detach()) > 0.01  # active on this batch
    torch.testing.assert_close(aux.double(), ref_aux, **AUX)
    got = torch.autograd.grad(aux, leaves, allow_unused=True, materialize_grads=True)
    expected = torch.autograd.grad(
        ref_aux, leaves, allow_unused=True, materialize_grads=True
    )
    for pname, g, e in zip(params, got, expected, strict=True):
        torch.testing.assert_close(
            g.double(), e, **AUX, msg=lambda m, p=pname: f"aux gradient of {p}: {m}"
        )


CHOSEN: dict[str, list[str]] = {
    "shared_bottom": ["bottom.layers.0.weight", "towers.1.head.weight"],
    "mmoe": ["gates.0.linear.weight", "experts.weights.0", "embedding.tables.0"],
    "ple": [
        "levels.1.task_gates.0.linear.weight",
        "levels.0.shared_gate.linear.weight",
        "levels.0.specific.1.weights.0",
    ],
    "esmm": ["ctr_tower.mlp.layers.0.weight", "cvr_tower.head.weight"],
    "aitm": ["transfers.0.h1.weight", "transfers.0.transfer.0.weight"],
}


@pytest.mark.parametrize("name", sorted(CHOSEN))
def test_chosen_parameter_gradient_of_a_bce_loss(name):
    """One parameter per model, a BCE loss with labels: the training objective."""
    config = dict(next(c for n, k, c in CASES if n == name and k == 2))
    model = golden_model(name, 2, config, seed=7)
    schema = golden_schema(2)
    sparse, dense = golden_batch(schema, seed=2)
    labels = torch.randint(0, 2, (N_ROWS,), generator=torch.Generator().manual_seed(3))
    params = dict(model.named_parameters())
    chosen = [params[p] for p in CHOSEN[name]]

    def bce(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(
            torch.nn.functional.binary_cross_entropy_with_logits(
                outputs[t], labels.double()
            )
            for t in ("ctr", "ctcvr")
        )

    outputs = model(sparse, dense)
    aux = model.auxiliary_loss(outputs)
    loss = bce(outputs) + (aux if aux is not None else 0.0)
    got = torch.autograd.grad(loss, chosen)
    ref_outputs = reference_forward(name, config, schema, params, sparse, dense)
    ref_aux = reference_aux(name, config, schema, ref_outputs)
    ref_loss = bce(ref_outputs) + (ref_aux if ref_aux is not None else 0.0)
    expected = torch.autograd.grad(ref_loss, chosen)
    for pname, g, e in zip(CHOSEN[name], got, expected, strict=True):
        assert float(e.abs().max()) > 1e-6, pname
        torch.testing.assert_close(g.to_dense(), e, **(EXACT if aux is None else AUX))


def test_mmoe_gate_weights_match_reference():
    config = dict(CASES[2][2])
    model = golden_model("mmoe", 2, config)
    schema = golden_schema(2)
    sparse, dense = golden_batch(schema)
    params = dict(model.named_parameters())
    with torch.no_grad():
        got = model.gate_weights(sparse, dense)
        x = reference.embed(params, schema, sparse, dense)
        expected = torch.stack(
            [reference.gate(params, f"gates.{t}", x) for t in range(2)], dim=1
        )
    torch.testing.assert_close(got, expected, **EXACT)


def test_ple_gate_weights_match_reference():
    config = dict(CASES[6][2])  # three levels, three tasks
    model = golden_model("ple", 3, config)
    schema = golden_schema(3)
    sparse, dense = golden_batch(schema)
    params = dict(model.named_parameters())
    expected: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        got = model.gate_weights(sparse, dense)
        reference.ple(params, schema, sparse, dense, record=expected)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, **EXACT)


@pytest.mark.parametrize("name", sorted(CHOSEN))
def test_dropout_is_off_in_eval_mode(name):
    config = {**next(c for n, k, c in CASES if n == name and k == 2), "dropout": 0.5}
    model = golden_model(name, 2, config).eval()
    schema = golden_schema(2)
    sparse, dense = golden_batch(schema)
    params = dict(model.named_parameters())
    with torch.no_grad():
        got = model(sparse, dense)
        expected = reference_forward(name, config, schema, params, sparse, dense)
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, **EXACT)
        # ... and on in training mode
        model.train()
        trained = model(sparse, dense)
    assert any(not torch.allclose(trained[k], v) for k, v in expected.items())
