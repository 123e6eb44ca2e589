"""MetaBalance: auxiliary gradients rescaled on the shared parameters only."""

from __future__ import annotations

import pytest
import torch

from mtl_reco.modeling.config import ConfigError
from mtl_reco.modeling.weighting.metabalance import MetaBalance, MetaBalanceConfig

from .._toy import ToyModel, bce_losses, random_batch, toy_schema
from ..conftest import build_tiny_schema, make_small_model


def _task_grads(
    params: list[torch.nn.Parameter], losses: dict[str, torch.Tensor]
) -> dict[str, list[torch.Tensor]]:
    return {
        name: list(
            torch.autograd.grad(loss, params, retain_graph=True, materialize_grads=True)
        )
        for name, loss in losses.items()
    }


def test_relax_one_equalises_aux_norm_on_shared_only() -> None:
    torch.manual_seed(0)
    model = ToyModel(toy_schema(3), tower_scale=(5.0, 0.3, 1.0))
    strategy = MetaBalance(model.task_names, MetaBalanceConfig(relax_factor=1.0))
    strategy.bind(model)
    assert strategy.main_task == "t2"  # default: the last (deepest) task
    sparse, dense, labels = random_batch(model.schema, 64)
    losses = bce_losses(model, sparse, dense, labels)
    shared = model.shared_parameters()
    per_task = _task_grads(shared, losses)
    own = [p for ps in model.task_parameters().values() for p in ps]
    plain_own = torch.autograd.grad(sum(losses.values()), own, retain_graph=True)

    used = strategy.backward(losses)

    for k, p in enumerate(shared):
        main = per_task["t2"][k]
        expected = main.clone()
        for aux in ("t0", "t1"):
            g = per_task[aux][k]
            expected += g * main.norm() / g.norm()
        torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-7)
        # each rescaled auxiliary gradient has the main gradient's norm
        for aux in ("t0", "t1"):
            g = per_task[aux][k]
            assert float((g * main.norm() / g.norm()).norm()) == pytest.approx(
                float(main.norm()), rel=1e-5
            )
    for p, g in zip(own, plain_own, strict=True):
        torch.testing.assert_close(p.grad, g)  # task towers: untouched
    assert used["t2"] == 1.0
    assert used["t0"] < 1.0 < used["t1"]  # big task damped, small task boosted


def test_relax_zero_is_the_plain_sum() -> None:
    torch.manual_seed(1)
    model = ToyModel(toy_schema(), tower_scale=(4.0, 1.0))
    strategy = MetaBalance(model.task_names, MetaBalanceConfig(relax_factor=0.0))
    strategy.bind(model)
    sparse, dense, labels = random_batch(model.schema, 32)
    losses = bce_losses(model, sparse, dense, labels)
    params = list(model.parameters())
    expected = torch.autograd.grad(sum(losses.values()), params, retain_graph=True)
    strategy.backward(losses)
    for p, g in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-7)


def test_moving_average_relax_and_main_task() -> None:
    torch.manual_seed(2)
    model = ToyModel(toy_schema(), tower_scale=(3.0, 1.0))
    cfg = MetaBalanceConfig(main_task="t0", relax_factor=0.7, beta=0.9)
    strategy = MetaBalance(model.task_names, cfg)
    strategy.bind(model)
    shared = model.shared_parameters()
    avg = torch.zeros(2, len(shared))
    for step in range(2):
        sparse, dense, labels = random_batch(model.schema, 32, seed=step)
        losses = bce_losses(model, sparse, dense, labels)
        per_task = _task_grads(shared, losses)
        norms = torch.tensor(
            [[float(g.norm()) for g in per_task[n]] for n in ("t0", "t1")]
        )
        avg = 0.9 * avg + 0.1 * norms
        model.zero_grad(set_to_none=True)
        strategy.backward(losses)
        torch.testing.assert_close(strategy.norm_averages, avg, rtol=1e-5, atol=1e-8)
        for k, p in enumerate(shared):
            scale = 0.7 * avg[0, k] / avg[1, k] + 0.3
            expected = per_task["t0"][k] + scale * per_task["t1"][k]
            torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-7)


def test_aux_loss_gradient_added_unchanged() -> None:
    torch.manual_seed(3)
    model = ToyModel(toy_schema(), tower_scale=(3.0, 1.0), aux_weight=0.5)
    strategy = MetaBalance(model.task_names, MetaBalanceConfig(relax_factor=1.0))
    strategy.bind(model)
    sparse, dense, labels = random_batch(model.schema, 32)
    out = model(sparse, dense)
    losses = {
        name: torch.nn.functional.binary_cross_entropy_with_logits(
            out[name], labels[:, i]
        )
        for i, name in enumerate(model.task_names)
    }
    aux = model.auxiliary_loss(out)
    assert aux is not None
    shared = model.shared_parameters()
    per_task = _task_grads(shared, {**losses, "aux": aux})
    params = list(model.parameters())
    plain = torch.autograd.grad(sum(losses.values()) + aux, params, retain_graph=True)
    strategy.backward(losses, aux)
    for k, p in enumerate(shared):
        main, g = per_task["t1"][k], per_task["t0"][k]
        expected = main + g * main.norm() / g.norm() + per_task["aux"][k]
        torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-6)
    shared_ids = {id(p) for p in shared}
    for p, g in zip(params, plain, strict=True):
        if id(p) not in shared_ids:
            torch.testing.assert_close(p.grad, g)


def test_ple_task_experts_are_not_rescaled() -> None:
    schema = build_tiny_schema()
    model = make_small_model("ple", schema, n_levels=3)
    strategy = MetaBalance(model.task_names, MetaBalanceConfig(relax_factor=1.0))
    strategy.bind(model)
    sparse, dense, labels = random_batch(schema, 48)
    losses = bce_losses(model, sparse, dense, labels)
    shared = model.shared_parameters()
    shared_ids = {id(p) for p in shared}
    own = [p for ps in model.task_parameters().values() for p in ps]
    assert own and not any(id(p) in shared_ids for p in own)
    plain = torch.autograd.grad(sum(losses.values()), own, retain_graph=True)
    per_task = _task_grads(shared, losses)
    strategy.backward(losses)
    for p, g in zip(own, plain, strict=True):
        torch.testing.assert_close(p.grad, g)  # task experts/gates/towers: plain
    # and the shared experts were rescaled (differ from the plain sum): relax 1
    # and a first step (the averages are (1 - beta) times the norms) give the
    # auxiliary gradient the main gradient's norm on every shared tensor
    assert strategy.norm_averages.shape == (2, len(shared))
    rescaled = 0
    for k, p in enumerate(shared):
        main, aux = per_task["ctcvr"][k], per_task["ctr"][k]
        expected = main + aux * main.norm() / aux.norm()
        torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-7)
        if not torch.allclose(expected, main + aux, rtol=1e-3, atol=0):
            rescaled += 1
    assert rescaled == len(shared)


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="main_task 'cvr'"):
        MetaBalance(["ctr", "ctcvr"], MetaBalanceConfig(main_task="cvr"))
    with pytest.raises(ConfigError, match="relax_factor"):
        MetaBalanceConfig(relax_factor=1.5)
    with pytest.raises(ConfigError, match="beta"):
        MetaBalanceConfig(beta=1.0)
    assert MetaBalanceConfig().relax_factor == 0.7 and MetaBalanceConfig().beta == 0.9


def test_current_weights_are_the_effective_scale_of_each_task() -> None:
    # Per shared tensor j, an auxiliary task's gradient is scaled by
    # s_j = r * m_main,j / m_k,j + (1 - r); the reported weight is the norm of
    # the scaled gradient over the norm of the plain one, from the averages m.
    strategy = MetaBalance(["aux", "main"], MetaBalanceConfig(relax_factor=0.7))
    strategy.norm_averages = torch.tensor([[1.0, 4.0, 0.5], [2.0, 2.0, 3.0]])
    m_aux, m_main, r = [1.0, 4.0, 0.5], [2.0, 2.0, 3.0], 0.7
    pairs = zip(m_aux, m_main, strict=True)
    scaled = [(r * mm / ma + (1 - r)) * ma for ma, mm in pairs]
    expected = (sum(v * v for v in scaled) / sum(v * v for v in m_aux)) ** 0.5
    weights = strategy.current_weights()
    assert weights["main"] == 1.0
    assert weights["aux"] == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.9235, abs=1e-4)  # not 1: the case is not trivial
