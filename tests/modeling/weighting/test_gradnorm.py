"""GradNorm: per-task targets, last shared layer, positive renormalised weights."""

from __future__ import annotations

import pytest
import torch

from mtl_reco.modeling.config import ConfigError
from mtl_reco.modeling.weighting.gradnorm import GradNorm, GradNormConfig

from .._toy import ToyModel, bce_losses, random_batch, toy_schema


def _setup(
    scale: tuple[float, ...] = (1.0, 4.0), alpha: float = 1.5
) -> tuple[ToyModel, GradNorm]:
    torch.manual_seed(0)
    model = ToyModel(toy_schema(len(scale)), tower_scale=scale)
    strategy = GradNorm(model.task_names, GradNormConfig(alpha=alpha))
    strategy.bind(model)
    return model, strategy


def _reference_weight_grad(
    model: ToyModel,
    weights: torch.Tensor,
    losses: dict[str, torch.Tensor],
    initial: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """The paper's L_grad differentiated through create_graph (second order)."""
    w = weights.clone().requires_grad_(True)
    layer = model.last_shared_layer()
    norms = []
    for i, name in enumerate(model.task_names):
        (g,) = torch.autograd.grad(
            w[i] * losses[name], layer, retain_graph=True, create_graph=True
        )
        norms.append(torch.linalg.vector_norm(g))
    grad_norms = torch.stack(norms)
    current = torch.stack([losses[n].detach() for n in model.task_names])
    ratio = current / initial
    r = ratio / ratio.mean()
    target = (grad_norms.mean() * r**alpha).detach()
    l_grad = (grad_norms - target).abs().sum()
    (dw,) = torch.autograd.grad(l_grad, w)
    return dw


def test_weight_gradient_matches_create_graph_reference() -> None:
    model, strategy = _setup((1.0, 3.0, 0.5))
    opt = torch.optim.SGD([strategy.weights], lr=0.05)
    initial = None
    for step in range(3):
        sparse, dense, labels = random_batch(model.schema, 64, seed=step)
        losses = bce_losses(model, sparse, dense, labels)
        if initial is None:
            initial = torch.stack([losses[n].detach() for n in model.task_names])
        weights = strategy.weights.detach().clone()
        expected = _reference_weight_grad(model, weights, losses, initial, 1.5)
        model.zero_grad(set_to_none=True)
        opt.zero_grad(set_to_none=True)
        strategy.backward(losses)
        torch.testing.assert_close(
            strategy.weights.grad, expected, rtol=1e-5, atol=1e-7
        )
        torch.testing.assert_close(strategy.initial_losses, initial)
        opt.step()
        strategy.after_step()


def test_lowers_weight_of_task_with_larger_gradient_norm() -> None:
    model, strategy = _setup((1.0, 4.0))
    sparse, dense, labels = random_batch(model.schema, 128)
    ordered = [bce_losses(model, sparse, dense, labels)[n] for n in model.task_names]
    norms = strategy.task_gradient_norms(ordered)
    assert float(norms[1] / norms[0]) > 1.3  # task t1 has the larger norm
    # equal loss ratios (same batch, r_i = 1): the fixed point balances
    # w_i ||grad L_i||, i.e. w = T * (1 / n_i) / sum_j (1 / n_j)
    balanced = 2 * (1 / norms) / (1 / norms).sum()
    opt = torch.optim.Adam([strategy.weights], lr=0.01)
    for _ in range(120):
        model.zero_grad(set_to_none=True)
        opt.zero_grad(set_to_none=True)
        strategy.backward(bce_losses(model, sparse, dense, labels))
        opt.step()
        strategy.after_step()
        w = strategy.weights.detach()
        assert bool((w > 0).all())
        assert float(w.sum()) == pytest.approx(2.0, rel=1e-6)
    weights = strategy.current_weights()
    assert weights["t1"] < 0.9 < 1.1 < weights["t0"]
    # most of the way from (1, 1) to the balanced weights
    start = float((balanced - 1).abs().max())
    left = float((strategy.weights.detach() - balanced).abs().max())
    assert left < 0.2 * start


def test_uses_last_shared_layer_not_embedding() -> None:
    model, strategy = _setup((1.0, 4.0))
    calls = []
    original = model.last_shared_layer

    def spy() -> torch.nn.Parameter:
        calls.append(1)
        return original()

    model.last_shared_layer = spy  # type: ignore[method-assign]
    sparse, dense, labels = random_batch(model.schema, 32)
    losses = bce_losses(model, sparse, dense, labels)
    ordered = [losses[n] for n in model.task_names]
    norms = strategy.task_gradient_norms(ordered)
    assert calls
    at_layer = [
        torch.linalg.vector_norm(
            torch.autograd.grad(loss, model.shared.weight, retain_graph=True)[0]
        )
        for loss in ordered
    ]
    at_embedding = [
        torch.linalg.vector_norm(
            torch.autograd.grad(loss, model.embedding.weight, retain_graph=True)[0]
        )
        for loss in ordered
    ]
    torch.testing.assert_close(norms, torch.stack(at_layer))
    assert not torch.allclose(norms, torch.stack(at_embedding))


def test_model_gets_weighted_sum_and_aux_unchanged() -> None:
    torch.manual_seed(3)
    model = ToyModel(toy_schema(), aux_weight=0.2)
    strategy = GradNorm(model.task_names)
    strategy.bind(model)
    with torch.no_grad():
        strategy.weights.copy_(torch.tensor([0.5, 1.5]))
    sparse, dense, labels = random_batch(model.schema, 32)
    out = model(sparse, dense)
    losses = bce_losses(model, sparse, dense, labels)
    total = 0.5 * losses["t0"] + 1.5 * losses["t1"] + model.auxiliary_loss(out)
    params = list(model.parameters())
    expected = torch.autograd.grad(total, params, retain_graph=True)
    used = strategy.backward(losses, model.auxiliary_loss(out))
    assert used == {"t0": 0.5, "t1": 1.5}
    for p, g in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_after_step_keeps_weights_positive_and_sums_to_task_count() -> None:
    strategy = GradNorm(["a", "b", "c"], GradNormConfig(min_weight=0.01))
    with torch.no_grad():
        strategy.weights.copy_(torch.tensor([-0.5, 2.0, 2.0]))
    strategy.after_step()
    w = strategy.weights.detach()
    assert bool((w > 0).all())
    assert float(w.sum()) == pytest.approx(3.0)
    torch.testing.assert_close(w, torch.tensor([0.01, 2.0, 2.0]) * 3 / 4.01)
    with pytest.raises(ConfigError, match="alpha"):
        GradNormConfig(alpha=-1.0)


def test_works_for_a_batch_of_one_row() -> None:
    model, strategy = _setup((1.0, 2.0))
    with torch.no_grad():
        strategy.weights.copy_(torch.tensor([0.6, 1.4]))
    sparse, dense, labels = random_batch(model.schema, 1)
    losses = bce_losses(model, sparse, dense, labels)
    # first step: L(0) = L(t), so r_i = 1 and every target is mean(G)
    initial = torch.stack([losses[n].detach() for n in model.task_names])
    expected = _reference_weight_grad(
        model, torch.tensor([0.6, 1.4]), losses, initial, 1.5
    )
    weights = strategy.backward(losses)
    assert weights == pytest.approx({"t0": 0.6, "t1": 1.4})
    assert torch.isfinite(strategy.weights.grad).all()
    torch.testing.assert_close(strategy.weights.grad, expected, rtol=1e-5, atol=1e-7)
    assert bool((expected != 0).all())
