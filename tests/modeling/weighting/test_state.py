"""Registry, config checking and checkpointable state of every strategy."""

from __future__ import annotations

import pytest
import torch

from mtl_reco.modeling.config import ConfigError
from mtl_reco.modeling.weighting.base import LossWeighting
from mtl_reco.modeling.weighting.registry import (
    WeightingSpec,
    available_strategies,
    build_strategy,
    get_strategy_class,
)

from .._toy import ToyModel, bce_losses, random_batch, toy_schema

STRATEGIES = available_strategies()


@pytest.mark.parametrize("name", STRATEGIES)
def test_registry_name_class_and_config(name: str) -> None:
    cls = get_strategy_class(name)
    assert issubclass(cls, LossWeighting) and cls.name == name
    spec = WeightingSpec(name=name, params={})
    assert isinstance(spec.build_config(), cls.config_cls)


def test_spec_errors_name_the_strategy_and_key() -> None:
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        WeightingSpec(name="gradnorm", params={"alpah": 1.0})
    with pytest.raises(ConfigError, match="unknown loss weighting 'gradnrom'"):
        WeightingSpec(name="gradnrom")


def _trained(name: str, seed: int) -> tuple[ToyModel, LossWeighting]:
    torch.manual_seed(seed)
    model = ToyModel(toy_schema(3), tower_scale=(2.0, 1.0, 0.5), aux_weight=0.1)
    strategy = build_strategy(name, model.task_names)
    strategy.bind(model)
    groups = [{"params": list(model.parameters())}, *strategy.param_groups()]
    opt = torch.optim.Adam(groups, lr=0.01)
    for step in range(3):
        sparse, dense, labels = random_batch(model.schema, 16, seed=step)
        out = model(sparse, dense)
        losses = {
            n: torch.nn.functional.binary_cross_entropy_with_logits(
                out[n], labels[:, i]
            )
            for i, n in enumerate(model.task_names)
        }
        opt.zero_grad(set_to_none=True)
        strategy.backward(losses, model.auxiliary_loss(out))
        opt.step()
        strategy.after_step()
        strategy.on_epoch_end(
            {n: 0.5 + 0.1 * step * (i + 1) for i, n in enumerate(model.task_names)}
        )
    return model, strategy


@pytest.mark.parametrize("name", STRATEGIES)
def test_state_dict_round_trip(name: str) -> None:
    model, strategy = _trained(name, seed=0)
    state = strategy.state_dict()
    model_keys = set(model.state_dict())
    assert not any(k in model_keys or k.startswith("_model") for k in state)
    own = {id(p) for p in strategy.parameters()}
    assert not own & {id(p) for p in model.parameters()}

    model2, fresh = _trained(name, seed=1)  # different history
    fresh.load_state_dict(state)
    assert fresh.current_weights() == pytest.approx(strategy.current_weights())
    for key, value in fresh.state_dict().items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(value, state[key])
    # the next step behaves identically on the same model and batch
    model2.load_state_dict(model.state_dict())
    sparse, dense, labels = random_batch(model.schema, 16, seed=9)
    grads = []
    for m, s in ((model, strategy), (model2, fresh)):
        m.zero_grad(set_to_none=True)
        for p in s.parameters():
            p.grad = None
        weights = s.backward(bce_losses(m, sparse, dense, labels))
        assert all(w > 0 for w in weights.values())
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", STRATEGIES)
def test_missing_loss_is_a_clear_error(name: str) -> None:
    model = ToyModel(toy_schema())
    strategy = build_strategy(name, model.task_names)
    strategy.bind(model)
    sparse, dense, labels = random_batch(model.schema, 4)
    losses = bce_losses(model, sparse, dense, labels)
    del losses["t1"]
    with pytest.raises(KeyError, match=r"no loss given for task\(s\) \['t1'\]"):
        strategy.backward(losses)


def test_bind_checks_task_names() -> None:
    strategy = build_strategy("pcgrad", ["a", "b"])
    with pytest.raises(ValueError, match="built for tasks"):
        strategy.bind(ToyModel(toy_schema()))
