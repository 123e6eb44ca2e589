"""Architecture-specific invariants: ESMM funnel, gates, PLE levels, AITM."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mtl_reco.modeling.config import ConfigError
from mtl_reco.modeling.models.aitm import AITM, AITMConfig
from mtl_reco.modeling.models.base import ModelContractError, product_logit
from mtl_reco.modeling.models.esmm import ESMM, ESMMConfig
from mtl_reco.modeling.models.mmoe import MMoEConfig
from mtl_reco.modeling.models.ple import PLE, PLEConfig
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.schema import Funnel, TaskSpec

from ..conftest import make_small_model, random_inputs

# --- ESMM -------------------------------------------------------------------------


def test_esmm_outputs_and_ctcvr_is_ctr_times_cvr(tiny_schema):
    model = make_small_model("esmm", tiny_schema)
    assert model.task_names == ("ctr", "ctcvr")
    assert model.output_names == ("ctr", "ctcvr", "cvr")
    assert model.task_types["cvr"] == "classification"
    sparse, dense = random_inputs(tiny_schema, 200, seed=4)
    with torch.no_grad():
        # spread the logits so the check covers more than p ~ 0.5
        model.ctr_tower.head.weight.mul_(200)
        model.cvr_tower.head.weight.mul_(200)
        out = model(sparse, dense)
        probs = model.predict(sparse, dense)
    assert float(out["ctr"].std()) > 1 and float(out["cvr"].std()) > 1
    product = torch.sigmoid(out["ctr"]) * torch.sigmoid(out["cvr"])
    torch.testing.assert_close(torch.sigmoid(out["ctcvr"]), product, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        probs["ctcvr"], probs["ctr"] * probs["cvr"], atol=1e-6, rtol=0
    )


def test_esmm_uses_dense_features(tiny_schema):
    model = make_small_model("esmm", tiny_schema).eval()
    sparse, dense = random_inputs(tiny_schema, 4)
    with torch.no_grad():
        a = model(sparse, dense)
        b = model(sparse, dense + 1.0)
    assert not torch.allclose(a["cvr"], b["cvr"])
    assert not torch.allclose(a["ctr"], b["ctr"])


def _reference_logit(a: float, b: float) -> float:
    """logit(sigmoid(a) * sigmoid(b)) in float64 with stable pieces."""
    log_p = -np.logaddexp(0, -a) - np.logaddexp(0, -b)
    # 1 - s(a)s(b) = s(-a) + s(a)s(-b)
    log_not_p = np.logaddexp(
        -np.logaddexp(0, a), -np.logaddexp(0, -a) - np.logaddexp(0, b)
    )
    return float(log_p - log_not_p)


@pytest.mark.parametrize(
    ("a", "b"),
    [(50, 50), (50, -50), (-50, 50), (-50, -50), (0, 0), (3, -2), (50, 0), (-20, 30)],
)
def test_product_logit_is_exact_and_stable_for_extreme_logits(a, b):
    got = product_logit(torch.tensor([float(a)]), torch.tensor([float(b)]))
    assert bool(torch.isfinite(got).all())
    ref = _reference_logit(a, b)
    assert abs(float(got) - ref) <= 1e-4 * max(1.0, abs(ref))


def test_product_logit_gradients_finite_and_bce_matches_product_probability():
    a = torch.tensor([-50.0, -3.0, 0.5, 50.0], requires_grad=True)
    b = torch.tensor([50.0, 2.0, -1.0, 50.0], requires_grad=True)
    y = torch.tensor([0.0, 1.0, 0.0, 1.0])
    F.binary_cross_entropy_with_logits(product_logit(a, b), y).backward()
    assert bool(torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all())
    a64, b64 = a.detach()[1:3].double(), b.detach()[1:3].double()
    p = torch.sigmoid(a64) * torch.sigmoid(b64)
    expected = F.binary_cross_entropy(p, y[1:3].double())
    got = F.binary_cross_entropy_with_logits(product_logit(a64, b64), y[1:3].double())
    torch.testing.assert_close(got, expected)


def test_product_logit_of_bfloat16_logits_is_float32_and_exact():
    # what ESMM's towers hand over under bf16 autocast on a GPU
    gen = torch.Generator().manual_seed(0)
    a = (torch.randn(10_000, generator=gen) * 3 - 2).bfloat16()
    b = (torch.randn(10_000, generator=gen) * 3 - 3).bfloat16()
    got = product_logit(a, b)
    assert got.dtype == torch.float32
    ref = product_logit(a.double(), b.double())
    p_got, p_ref = torch.sigmoid(got.double()), torch.sigmoid(ref)
    assert float(((p_got - p_ref) / p_ref).abs().max()) < 1e-5


def test_esmm_ctcvr_logit_stays_float32_under_bfloat16_autocast(tiny_schema):
    torch.manual_seed(0)
    model = ESMM(tiny_schema, config=ESMMConfig(ctr_dims=[8], cvr_dims=[8]))
    sparse = torch.zeros(16, len(tiny_schema.sparse), dtype=torch.int64)
    dense = torch.randn(16, len(tiny_schema.dense))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(sparse, dense)
    ctr, conversion = model.click_task, model.conversion_task
    assert out[ctr].dtype == torch.bfloat16  # the towers did run in bf16
    assert out[conversion].dtype == torch.float32
    expected = product_logit(out[ctr].double(), out[model.config.cvr_output].double())
    torch.testing.assert_close(out[conversion].double(), expected, rtol=0, atol=1e-6)


def test_esmm_requires_a_funnel(regression_schema, tiny_schema):
    no_funnel = dataclasses.replace(tiny_schema, funnel=None)
    with pytest.raises(ModelContractError, match="funnel"):
        ESMM(no_funnel, config=ESMMConfig(ctr_dims=[8], cvr_dims=[8]))


def test_esmm_rejects_extra_tasks(tiny_schema):
    schema = dataclasses.replace(
        tiny_schema, tasks=(*tiny_schema.tasks, TaskSpec("favourite"))
    )
    with pytest.raises(ModelContractError, match=r"favourite"):
        ESMM(schema)
    # selecting the funnel tasks works
    assert ESMM(schema, ["ctr", "ctcvr"], ESMMConfig(ctr_dims=[4])).task_names == (
        "ctr",
        "ctcvr",
    )


def test_esmm_latent_name_clash_and_rename(tiny_schema):
    with pytest.raises(ModelContractError, match="clashes"):
        ESMM(tiny_schema, config=ESMMConfig(ctr_dims=[4], cvr_output="ctr"))
    model = ESMM(tiny_schema, config=ESMMConfig(ctr_dims=[4], cvr_output="pcvr"))
    sparse, dense = random_inputs(tiny_schema, 2)
    assert list(model(sparse, dense)) == ["ctr", "ctcvr", "pcvr"]


def test_esmm_task_parameters_document_the_funnel(tiny_schema):
    model = make_small_model("esmm", tiny_schema)
    owned = model.task_parameters()
    assert owned["ctr"] == []
    assert {id(p) for p in owned["ctcvr"]} == {
        id(p) for p in model.cvr_tower.parameters()
    }
    assert model.last_shared_layer() is model.ctr_tower.mlp.linears()[-1].weight


# --- gates ------------------------------------------------------------------------


def test_mmoe_gates_sum_to_one(tiny_schema):
    model = make_small_model("mmoe", tiny_schema)
    sparse, dense = random_inputs(tiny_schema, 17)
    weights = model.gate_weights(sparse, dense)
    assert weights.shape == (17, 2, 4)
    assert bool((weights >= 0).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(17, 2))


@pytest.mark.parametrize("n_levels", [1, 2, 3])
def test_ple_levels_and_gates(n_levels, tiny_schema):
    model = make_small_model("ple", tiny_schema, n_levels=n_levels)
    assert isinstance(model, PLE) and len(model.levels) == n_levels
    sparse, dense = random_inputs(tiny_schema, 11)
    out = model(sparse, dense)
    assert {k: v.shape for k, v in out.items()} == {
        "ctr": (11,),
        "ctcvr": (11,),
    }
    gates = model.gate_weights(sparse, dense)
    expected_keys = {f"level{i}.task{t}" for i in range(n_levels) for t in (0, 1)}
    expected_keys |= {f"level{i}.shared" for i in range(n_levels - 1)}
    assert set(gates) == expected_keys
    for key, w in gates.items():
        assert w.shape[1] == (2 * 2 + 2 if key.endswith("shared") else 2 + 2)
        torch.testing.assert_close(w.sum(-1), torch.ones(11))
    # shared parameters: embedding + shared experts + non-final shared gates
    n_shared_tensors = 1 + n_levels * 4 + (n_levels - 1) * 2
    assert len(model.shared_parameters()) == n_shared_tensors
    final = model.levels[-1]
    assert final.shared_gate is None
    assert model.last_shared_layer() is final.shared.last_layer_weight()


def test_ple_config_validation():
    with pytest.raises(ConfigError, match="n_levels"):
        PLEConfig(n_levels=0)
    with pytest.raises(ConfigError, match="expert_dims"):
        PLEConfig(expert_dims=[])
    with pytest.raises(ConfigError, match="n_experts"):
        MMoEConfig(n_experts=0)
    with pytest.raises(ConfigError, match="did you mean 'n_experts'"):
        MMoEConfig.from_dict({"n_expert": 4})
    with pytest.raises(ConfigError, match="expert_layout"):
        MMoEConfig.from_dict({"expert_layout": "einsum"})


@pytest.mark.parametrize("layout", ["per_expert", "fused", "bmm", "manual"])
def test_mmoe_expert_layout_changes_speed_not_results(layout, tiny_schema):
    ref = make_small_model("mmoe", tiny_schema, expert_layout="per_expert")
    model = make_small_model("mmoe", tiny_schema, expert_layout=layout)
    model.load_state_dict(ref.state_dict())
    sparse, dense = random_inputs(tiny_schema, 9)
    for key, value in ref(sparse, dense).items():
        torch.testing.assert_close(model(sparse, dense)[key], value)


# --- AITM -------------------------------------------------------------------------


def test_aitm_auxiliary_loss_is_nonnegative(tiny_schema):
    model = make_small_model("aitm", tiny_schema)
    # the funnel is respected on most rows, violated on some: the mean gap
    # p_ctcvr - p_ctr is negative, so only max(gap, 0) keeps the loss >= 0
    gen = torch.Generator().manual_seed(0)
    ctr = 2 * torch.randn(64, generator=gen)
    outputs = {"ctr": ctr, "ctcvr": ctr - 1.0 + torch.randn(64, generator=gen)}
    gap = torch.sigmoid(outputs["ctcvr"]) - torch.sigmoid(ctr)
    assert float(gap.mean()) < 0 < float(gap.max())
    aux = model.auxiliary_loss(outputs)
    assert aux is not None and aux.shape == ()
    assert float(aux) > 0  # the violating rows are penalised
    expected = model.config.calibrator_alpha * gap.clamp_min(0).mean()
    assert float(aux) == pytest.approx(float(expected), rel=1e-6)
    # every row violating in reverse (p_ctcvr < p_ctr everywhere): exactly zero
    reverse = model.auxiliary_loss({"ctr": ctr, "ctcvr": ctr - 0.5})
    assert float(reverse) == 0.0


def test_aitm_auxiliary_loss_zero_when_funnel_respected(tiny_schema):
    model = make_small_model("aitm", tiny_schema)
    ctr = torch.linspace(-5, 5, 50)
    outputs = {"ctr": ctr, "ctcvr": ctr - torch.rand(50)}  # p_ctcvr <= p_ctr
    assert float(model.auxiliary_loss(outputs)) == 0.0
    outputs["ctcvr"] = ctr.clone()  # equal probabilities: still no penalty
    assert float(model.auxiliary_loss(outputs)) == 0.0


def test_aitm_auxiliary_loss_value_and_alpha_scaling(tiny_schema):
    outputs = {
        "ctr": torch.tensor([0.0, 0.0, 2.0]),
        "ctcvr": torch.tensor([2.0, -1.0, 0.0]),
    }
    gap = float(torch.sigmoid(torch.tensor(2.0)) - 0.5)  # only row 0 violates
    losses = {}
    for alpha in (0.6, 1.2, 0.0):
        model = AITM(
            tiny_schema, config=AITMConfig(tower_dims=[4], calibrator_alpha=alpha)
        )
        losses[alpha] = model.auxiliary_loss(outputs)
    assert losses[0.6] is not None and losses[1.2] is not None
    assert float(losses[0.6]) == pytest.approx(0.6 * gap / 3, rel=1e-6)
    assert float(losses[1.2]) == pytest.approx(2 * float(losses[0.6]), rel=1e-6)
    assert losses[0.0] is None
    assert AITMConfig().calibrator_alpha == 0.6
    with pytest.raises(ConfigError, match="calibrator_alpha"):
        AITMConfig(calibrator_alpha=-1)


def test_aitm_auxiliary_loss_is_float32_for_bfloat16_logits(tiny_schema):
    model = make_small_model("aitm", tiny_schema)
    ctr = torch.linspace(-3, 3, 64)
    ctcvr = ctr + torch.linspace(0.001, 0.02, 64)  # tiny violations
    outputs = {"ctr": ctr.bfloat16(), "ctcvr": ctcvr.bfloat16()}
    got = model.auxiliary_loss(outputs)
    assert got is not None and got.dtype == torch.float32
    wide = {k: v.double() for k, v in outputs.items()}  # same bf16 values
    expected = model.auxiliary_loss(wide)
    assert expected is not None
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_aitm_auxiliary_loss_sums_consecutive_pairs(tiny_schema):
    # a three-step funnel: click a, an intermediate step b, conversion c
    schema = dataclasses.replace(
        tiny_schema,
        tasks=(TaskSpec("a"), TaskSpec("b"), TaskSpec("c")),
        funnel=Funnel("a", "c"),
    )
    model = AITM(schema, config=AITMConfig(tower_dims=[4], calibrator_alpha=1.0))
    assert model.calibrated
    logit = torch.logit
    outputs = {
        "a": logit(torch.tensor([0.2])),
        "b": logit(torch.tensor([0.5])),  # +0.3 over a
        "c": logit(torch.tensor([0.6])),  # +0.1 over b
    }
    assert float(model.auxiliary_loss(outputs)) == pytest.approx(0.4, abs=1e-6)


def test_aitm_calibrator_is_off_when_the_tasks_are_no_funnel(tiny_schema, caplog):
    # Census-like: two unordered tasks; the calibrator's ordering assumption fails
    schema = dataclasses.replace(
        tiny_schema, tasks=(TaskSpec("income"), TaskSpec("marital")), funnel=None
    )
    with caplog.at_level("INFO", logger="mtl_reco.modeling.models.aitm"):
        model = AITM(schema, config=AITMConfig(tower_dims=[4], calibrator_alpha=0.6))
    assert not model.calibrated
    outputs = {"income": torch.tensor([-2.0, 3.0]), "marital": torch.tensor([2.0, 0.0])}
    assert model.auxiliary_loss(outputs) is None  # would be > 0 with the calibrator
    assert "calibrator off" in caplog.text
    funnel = AITM(tiny_schema, config=AITMConfig(tower_dims=[4], calibrator_alpha=0.6))
    assert funnel.calibrated
    penalty = funnel.auxiliary_loss(
        {"ctr": torch.tensor([0.0]), "ctcvr": torch.tensor([2.0])}
    )
    assert penalty is not None and float(penalty) > 0


def test_which_models_require_a_funnel():
    from mtl_reco.modeling.models.registry import get_model_class

    assert get_model_class("esmm").requires_funnel
    # AITM orders its tasks like a funnel but trains without one (calibrator off)
    assert not get_model_class("aitm").requires_funnel


def test_aitm_calibrator_gradient_pushes_funnel_order(tiny_schema):
    model = make_small_model("aitm", tiny_schema, calibrator_alpha=1.0)
    outputs = {
        "ctr": torch.tensor([-1.0], requires_grad=True),
        "ctcvr": torch.tensor([1.0], requires_grad=True),
    }
    model.auxiliary_loss(outputs).backward()
    assert float(outputs["ctr"].grad) < 0 < float(outputs["ctcvr"].grad)


def test_aitm_requires_funnel_order(tiny_schema):
    with pytest.raises(ModelContractError, match="funnel order"):
        AITM(tiny_schema, ["ctcvr", "ctr"], AITMConfig(tower_dims=[4]))


def test_aitm_transfer_links_tasks(tiny_schema):
    """The second task's output depends on the first task's tower."""
    model = make_small_model("aitm", tiny_schema).eval()
    sparse, dense = random_inputs(tiny_schema, 5)
    with torch.no_grad():
        before = model(sparse, dense)
        model.towers[0].linears()[-1].bias.add_(1.0)
        after = model(sparse, dense)
    assert not torch.allclose(before["ctcvr"], after["ctcvr"])


def test_build_model_accepts_mapping_or_typed_config(tiny_schema):
    a = build_model("mmoe", tiny_schema, None, {"n_experts": 2, "expert_dims": [4]})
    b = build_model("mmoe", tiny_schema, None, MMoEConfig(n_experts=2, expert_dims=[4]))
    assert a.config == b.config
    assert a.experts.n_experts == 2


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("mmoe", {}),
        ("mmoe", {"expert_dims": [16]}),
        ("ple", {"n_levels": 1}),
        ("ple", {"n_levels": 3, "n_shared_experts": 1}),
    ],
)
def test_fast_path_is_the_plain_function(name, overrides, tiny_schema, monkeypatch):
    """The CPU training kernels compute what the plain (exported) path does."""
    from mtl_reco.modeling.kernels import experts

    model = make_small_model(
        name, tiny_schema, expert_layout="manual", **overrides
    ).double()
    sparse, dense = random_inputs(tiny_schema, 13)
    dense = dense.double()

    def run() -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        out = model(sparse, dense)
        sum((v * (i + 1)).sum() for i, v in enumerate(out.values())).backward()
        return out, [p.grad.clone() for p in model.parameters()]

    fast_out, fast_grads = run()
    monkeypatch.setattr(experts, "kernels_allowed", lambda x: False)
    plain_out, plain_grads = run()
    for key, value in plain_out.items():
        torch.testing.assert_close(fast_out[key], value)
    for fast, plain in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(fast, plain)
