"""PCGrad: projection of conflicting gradients, checked on hand-made vectors."""

from __future__ import annotations

import torch

from mtl_reco.modeling.weighting.pcgrad import PCGrad, PCGradConfig

from .._toy import ProbeModel, ToyModel, bce_losses, random_batch, toy_schema


def _bound(n_tasks: int, dim: int, seed: int = 0) -> tuple[ProbeModel, PCGrad]:
    model = ProbeModel(n_tasks, dim)
    strategy = PCGrad(model.task_names, PCGradConfig(seed=seed))
    strategy.bind(model)
    return model, strategy


def test_conflicting_pair_is_projected() -> None:
    model, strategy = _bound(2, 2)
    # g1 . g2 = -1 < 0:
    # g1' = g1 - (-1 / |g2|^2) g2 = [0.5, 0.5];  g2' = g2 - (-1 / |g1|^2) g1 = [0, 1]
    weights = strategy.backward(model.losses([[1.0, 0.0], [-1.0, 1.0]]))
    torch.testing.assert_close(model.theta.grad, torch.tensor([0.5, 1.5]))
    assert weights == {"t0": 1.0, "t1": 1.0}
    # task-owned parameters get their plain gradient
    assert [float(h.grad) for h in model.heads] == [1.0, 2.0]
    # the projected g1' is orthogonal to g2
    assert float(torch.dot(torch.tensor([0.5, 0.5]), torch.tensor([-1.0, 1.0]))) == 0.0


def test_non_conflicting_gradients_are_unchanged() -> None:
    model, strategy = _bound(2, 3)
    strategy.backward(model.losses([[1.0, 0.0, 2.0], [1.0, 1.0, 0.0]]))
    torch.testing.assert_close(model.theta.grad, torch.tensor([2.0, 1.0, 2.0]))


def _reference(grads: list[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    """Plain PCGrad on explicit vectors, drawing orders like the strategy."""
    out = []
    n = len(grads)
    for i in range(n):
        g = grads[i].clone()
        others = [j for j in range(n) if j != i]
        for pos in torch.randperm(len(others), generator=gen).tolist():
            gj = grads[others[pos]]
            dot = torch.dot(g, gj)
            if dot < 0:
                g = g - dot / torch.dot(gj, gj) * gj
        out.append(g)
    return torch.stack(out).sum(0)


def test_three_tasks_match_reference_with_same_order() -> None:
    grads = [[1.0, 0.0, 0.5], [-2.0, 1.0, 0.0], [0.3, -1.0, -1.0]]
    model, strategy = _bound(3, 3, seed=7)
    reference_gen = torch.Generator().manual_seed(7)
    for _ in range(4):  # orders differ per step; both sides draw the same ones
        model.zero_grad(set_to_none=True)
        strategy.backward(model.losses(grads))
        expected = _reference([torch.tensor(g) for g in grads], reference_gen)
        torch.testing.assert_close(model.theta.grad, expected, rtol=1e-6, atol=1e-7)


def test_generator_state_is_checkpointed() -> None:
    grads = [[1.0, 0.0, 0.5], [-2.0, 1.0, 0.0], [0.3, -1.0, -1.0]]
    model_a, a = _bound(3, 3, seed=1)
    a.backward(model_a.losses(grads))
    state = a.state_dict()
    model_b, b = _bound(3, 3, seed=99)
    b.load_state_dict(state)
    for _ in range(3):
        model_a.zero_grad(set_to_none=True)
        model_b.zero_grad(set_to_none=True)
        a.backward(model_a.losses(grads))
        b.backward(model_b.losses(grads))
        torch.testing.assert_close(model_a.theta.grad, model_b.theta.grad)


def test_real_model_with_aux_loss() -> None:
    torch.manual_seed(0)
    model = ToyModel(toy_schema(), tower_scale=(2.0, -1.0), aux_weight=0.3)
    strategy = PCGrad(model.task_names)
    strategy.bind(model)
    sparse, dense, labels = random_batch(model.schema, 40)
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
    flat = [
        torch.cat(
            [
                g.reshape(-1)
                for g in torch.autograd.grad(loss, shared, retain_graph=True)
            ]
        )
        for loss in losses.values()
    ]
    aux_flat = torch.cat(
        [g.reshape(-1) for g in torch.autograd.grad(aux, shared, retain_graph=True)]
    )
    expected = _reference(flat, torch.Generator().manual_seed(0)) + aux_flat
    strategy.backward(losses, aux)
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    tower = model.towers[1].weight
    plain = torch.autograd.grad(bce_losses(model, sparse, dense, labels)["t1"], tower)[
        0
    ]
    torch.testing.assert_close(tower.grad, plain)
