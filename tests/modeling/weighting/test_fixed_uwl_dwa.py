"""Fixed weights, uncertainty weighting (UWL) and DWA: analytic checks."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_reco.modeling.config import ConfigError
from mtl_reco.modeling.weighting.dwa import (
    DynamicWeightAverage,
    DynamicWeightAverageConfig,
)
from mtl_reco.modeling.weighting.fixed import FixedWeights, FixedWeightsConfig
from mtl_reco.modeling.weighting.registry import WeightingSpec
from mtl_reco.modeling.weighting.uwl import (
    UncertaintyWeighting,
    UncertaintyWeightingConfig,
)

from .._toy import ToyModel, bce_losses, random_batch, toy_schema


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


def _reference_grads(
    model: ToyModel, weights: list[float], aux: bool = False
) -> dict[str, torch.Tensor]:
    sparse, dense, labels = random_batch(model.schema, 32)
    model.zero_grad(set_to_none=True)
    out = model(sparse, dense)
    losses = bce_losses(model, sparse, dense, labels)
    total = sum(w * losses[n] for w, n in zip(weights, model.task_names, strict=True))
    aux_loss = model.auxiliary_loss(out)
    if aux and aux_loss is not None:
        total = total + aux_loss
    total.backward()
    return _grads(model)


def test_fixed_weights_scale_gradients_exactly() -> None:
    torch.manual_seed(0)
    model = ToyModel(toy_schema(), aux_weight=0.3)
    expected = _reference_grads(model, [2.0, 0.5], aux=True)
    strategy = FixedWeights(
        model.task_names, FixedWeightsConfig(weights={"t0": 2.0, "t1": 0.5})
    )
    strategy.bind(model)
    model.zero_grad(set_to_none=True)
    sparse, dense, labels = random_batch(model.schema, 32)
    out = model(sparse, dense)
    losses = bce_losses(model, sparse, dense, labels)
    weights = strategy.backward(losses, model.auxiliary_loss(out))
    assert weights == {"t0": 2.0, "t1": 0.5}
    got = _grads(model)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-7)


def test_fixed_default_is_one_and_unknown_task_is_an_error() -> None:
    assert FixedWeights(["a", "b"]).current_weights() == {"a": 1.0, "b": 1.0}
    with pytest.raises(ConfigError, match=r"unknown task\(s\) \['ctcrv'\].*'ctcvr'"):
        FixedWeights(["ctr", "ctcvr"], FixedWeightsConfig(weights={"ctcrv": 2.0}))
    with pytest.raises(ConfigError, match=">= 0"):
        FixedWeightsConfig(weights={"ctr": -1.0})
    with pytest.raises(ConfigError, match="did you mean 'weights'"):
        WeightingSpec(name="fixed", params={"weight": {}})


@pytest.mark.parametrize(("loss", "expected"), [(0.2, 2.5), (0.05, 10.0), (2.0, 0.25)])
def test_uwl_weight_moves_to_one_over_two_l(loss: float, expected: float) -> None:
    strategy = UncertaintyWeighting(["a", "b"])
    opt = torch.optim.Adam([strategy.log_vars], lr=0.05)
    constant = {"a": torch.tensor(loss), "b": torch.tensor(0.5)}
    for _ in range(1500):
        opt.zero_grad(set_to_none=True)
        strategy.backward(constant)
        opt.step()
    weights = strategy.current_weights()
    assert weights["a"] == pytest.approx(expected, rel=1e-3)
    assert weights["b"] == pytest.approx(1.0, rel=1e-3)  # 1 / (2 * 0.5)
    if loss < 0.5:  # no clamp: the log-variance went below 0
        assert float(strategy.log_vars.detach()[0]) < 0


def test_uwl_gradient_and_param_group() -> None:
    strategy = UncertaintyWeighting(
        ["a", "b"], UncertaintyWeightingConfig(init_log_var=0.3, lr=0.02)
    )
    losses = {"a": torch.tensor(0.2), "b": torch.tensor(1.5)}
    weights = strategy.backward(losses)
    assert weights["a"] == pytest.approx(math.exp(-0.3))
    # d/ds [exp(-s) L + s / 2] = -exp(-s) L + 1/2
    expected = [-math.exp(-0.3) * 0.2 + 0.5, -math.exp(-0.3) * 1.5 + 0.5]
    torch.testing.assert_close(strategy.log_vars.grad, torch.tensor(expected))
    (group,) = strategy.param_groups()
    assert group["lr"] == 0.02 and group["weight_decay"] == 0.0
    assert group["params"] == [strategy.log_vars]
    assert "lr" not in UncertaintyWeighting(["a", "b"]).param_groups()[0]


def test_uwl_model_gradient_is_precision_weighted() -> None:
    torch.manual_seed(1)
    model = ToyModel(toy_schema())
    strategy = UncertaintyWeighting(
        model.task_names, UncertaintyWeightingConfig(init_log_var=-0.5)
    )
    expected = _reference_grads(model, [math.exp(0.5)] * 2)
    model.zero_grad(set_to_none=True)
    sparse, dense, labels = random_batch(model.schema, 32)
    strategy.backward(bce_losses(model, sparse, dense, labels))
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-5, atol=1e-7)


def test_dwa_formula() -> None:
    strategy = DynamicWeightAverage(["a", "b", "c"])
    assert strategy.current_weights() == {"a": 1.0, "b": 1.0, "c": 1.0}
    strategy.on_epoch_end({"a": 1.0, "b": 2.0, "c": 0.5})
    assert strategy.current_weights() == {"a": 1.0, "b": 1.0, "c": 1.0}
    strategy.on_epoch_end({"a": 0.5, "b": 1.8, "c": 0.5})
    r = [0.5, 0.9, 1.0]
    denom = sum(math.exp(x / 2.0) for x in r)
    expected = [3 * math.exp(x / 2.0) / denom for x in r]
    got = strategy.current_weights()
    assert list(got.values()) == pytest.approx(expected, rel=1e-6)
    assert sum(got.values()) == pytest.approx(3.0)
    # a third epoch uses the last two: r = L(3) / L(2)
    strategy.on_epoch_end({"a": 0.5, "b": 0.9, "c": 1.0})
    r = [1.0, 0.5, 2.0]
    temp = DynamicWeightAverageConfig().temperature
    denom = sum(math.exp(x / temp) for x in r)
    expected = [3 * math.exp(x / temp) / denom for x in r]
    assert list(strategy.current_weights().values()) == pytest.approx(
        expected, rel=1e-6
    )


def test_dwa_temperature_and_backward_uses_weights() -> None:
    torch.manual_seed(2)
    model = ToyModel(toy_schema())
    strategy = DynamicWeightAverage(
        model.task_names, DynamicWeightAverageConfig(temperature=0.5)
    )
    strategy.on_epoch_end({"t0": 1.0, "t1": 1.0})
    strategy.on_epoch_end({"t0": 0.5, "t1": 1.0})
    w = [2 * math.exp(1.0) / (math.exp(1.0) + math.exp(2.0))]
    w.append(2 - w[0])
    expected = _reference_grads(model, w)
    model.zero_grad(set_to_none=True)
    sparse, dense, labels = random_batch(model.schema, 32)
    used = strategy.backward(bce_losses(model, sparse, dense, labels))
    assert list(used.values()) == pytest.approx(w, rel=1e-6)
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-5, atol=1e-7)
    with pytest.raises(KeyError, match="t1"):
        strategy.on_epoch_end({"t0": 1.0})
    with pytest.raises(ConfigError, match="temperature"):
        DynamicWeightAverageConfig(temperature=0.0)
