"""Row-sparse embedding gradients and the lazy optimizer (sparse_embedding_grad)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.data import TensorTable
from mtl_reco.modeling.kernels.sparse_grad import (
    LazyAdam,
    clip_grad_norm_,
    coalesce_rows,
    sparse_rows,
    unique_rows,
    use_row_sparse_gradients,
)
from mtl_reco.modeling.layers import FeatureEmbedding
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.trainer import Trainer, train
from mtl_reco.modeling.weighting.registry import available_strategies, build_strategy

from ..conftest import build_tiny_schema, make_small_model, random_inputs

STRATEGIES = available_strategies()


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def table(planted_tables: dict[str, TensorTable]) -> TensorTable:
    return planted_tables["train"].subset(torch.arange(600))


def _config(sparse: bool, **overrides: Any) -> TrainerConfig:
    base: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 128,
        "device": "cpu",
        "progress": False,
        "seed": 0,
        "sparse_embedding_grad": sparse,
        "early_stopping": {"patience": 0},
    }
    base.update(overrides)
    return TrainerConfig(**base)


def _fit(
    name: str, strategy: str, table: TensorTable, sparse: bool, **overrides: Any
) -> MultiTaskModel:
    model = make_small_model(name, build_tiny_schema(), seed=0)
    train(
        model,
        table,
        None,
        build_strategy(strategy, model.task_names),
        _config(sparse, **overrides),
    )
    return model


def _assert_same_params(a: torch.nn.Module, b: torch.nn.Module, **tol: float) -> None:
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value, **tol, msg=key)


@pytest.mark.parametrize("n_rows", [50, 100_000])  # mark array / torch.unique
def test_unique_rows_and_coalesce(n_rows: int) -> None:
    rows = torch.tensor([7, 3, 7, 0, 3, 9, 7])
    unique, inverse = unique_rows(rows, n_rows)
    assert unique.tolist() == [0, 3, 7, 9]
    assert torch.equal(unique[inverse], rows)
    values = torch.arange(14.0).view(7, 2)
    grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, (n_rows, 2))
    got_rows, got_values = coalesce_rows(grad)
    want = grad.coalesce()
    assert torch.equal(got_rows, want.indices()[0])
    torch.testing.assert_close(got_values, want.values())
    dense = sparse_rows(got_rows, got_values, (n_rows, 2)).to_dense()
    torch.testing.assert_close(dense, grad.to_dense())


def test_lookup_gives_the_dense_gradient_as_sparse_rows() -> None:
    schema = build_tiny_schema()
    sparse, dense = random_inputs(schema, 40)
    grads = {}
    for flag in (False, True):
        torch.manual_seed(0)
        emb = FeatureEmbedding(schema).train()
        use_row_sparse_gradients(emb, flag)
        out = emb(sparse, dense)
        (out * torch.arange(out.shape[1])).sum().backward()
        grads[flag] = emb.tables[0].grad
    assert not grads[False].is_sparse and grads[True].is_sparse
    torch.testing.assert_close(grads[True].to_dense(), grads[False])
    with torch.no_grad():  # forward unchanged, no graph: plain lookup
        emb.eval()
        torch.testing.assert_close(emb(sparse, dense), out.detach())


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", ["mmoe", "ple", "aitm"])
def test_sparse_equals_dense_for_plain_sgd(
    name: str, strategy: str, table: TensorTable
) -> None:
    """Plain SGD updates untouched rows by zero: lazy == dense training."""
    sgd = {"name": "sgd", "lr": 0.05, "momentum": 0.0, "weight_decay": 0.0}
    dense = _fit(name, strategy, table, False, optimizer=sgd)
    sparse = _fit(name, strategy, table, True, optimizer=sgd)
    _assert_same_params(dense, sparse, atol=1e-6, rtol=1e-5)


def test_sparse_gradient_clipping_equals_dense(table: TensorTable) -> None:
    sgd = {"name": "sgd", "lr": 0.1, "momentum": 0.0}
    dense = _fit("mmoe", "pcgrad", table, False, optimizer=sgd, grad_clip_norm=0.05)
    sparse = _fit("mmoe", "pcgrad", table, True, optimizer=sgd, grad_clip_norm=0.05)
    _assert_same_params(dense, sparse, atol=1e-6, rtol=1e-5)


def test_lazy_adam_updates_only_looked_up_rows(table: TensorTable) -> None:
    model = make_small_model("mmoe", build_tiny_schema(), seed=0)
    cfg = _config(True, optimizer={"name": "adam", "lr": 0.01, "weight_decay": 0.1})
    trainer = Trainer(model, build_strategy("fixed", model.task_names), cfg)
    assert isinstance(trainer.optimizer, LazyAdam)
    emb = model.embedding
    assert isinstance(emb, FeatureEmbedding)
    before = emb.tables[0].detach().clone()
    # every batch uses id 0 of field "user" only: its other rows are never looked up
    only_user0 = TensorTable(
        sparse=table.sparse.clone().index_fill_(1, torch.tensor([0]), 0),
        dense=table.dense,
        labels=table.labels,
        task_names=table.task_names,
    )
    trainer.fit(only_user0)
    after = emb.tables[0].detach()
    user_rows = slice(1, 60)  # field "user" has 60 rows at offset 0
    assert torch.equal(after[user_rows], before[user_rows])  # no decay at all
    assert not torch.equal(after[0], before[0])
    state = trainer.optimizer.state[emb.tables[0]]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq"}
    assert float(state["exp_avg"][user_rows].abs().sum()) == 0.0
    # the dense optimizer would have decayed every row
    dense_model = make_small_model("mmoe", build_tiny_schema(), seed=0)
    cfg = _config(False, optimizer={"name": "adam", "lr": 0.01, "weight_decay": 0.1})
    Trainer(dense_model, build_strategy("fixed", model.task_names), cfg).fit(only_user0)
    assert not torch.equal(
        dense_model.embedding.tables[0][user_rows], before[user_rows]
    )


def test_lazy_adam_first_step_equals_dense_adam() -> None:
    """Adam's first step leaves zero-gradient rows unchanged: same result."""
    torch.manual_seed(0)
    table = torch.nn.Parameter(torch.randn(10, 3))
    other = torch.nn.Parameter(torch.randn(3))
    rows = torch.tensor([1, 4, 4, 7])
    results = []
    for sparse in (False, True):
        t = torch.nn.Parameter(table.detach().clone())
        o = torch.nn.Parameter(other.detach().clone())
        opt = LazyAdam([t, o], lr=0.1, fused=True)
        values = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
        grad = torch.zeros(10, 3).index_add_(0, rows, values)
        t.grad = (
            torch.sparse_coo_tensor(rows.unsqueeze(0), values, (10, 3))
            if sparse
            else grad
        )
        o.grad = torch.ones(3)
        opt.step()
        results.append((t.detach(), o.detach()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


@pytest.mark.parametrize("strategy", ["fixed", "pcgrad"])
def test_resume_with_sparse_embedding_grad(
    strategy: str, table: TensorTable, tmp_path: Path
) -> None:
    def run(epochs: int, folder: Path) -> MultiTaskModel:
        model = make_small_model("esmm", build_tiny_schema(), seed=0)
        cfg = _config(
            True,
            epochs=epochs,
            checkpoint_dir=str(folder),
            optimizer={"name": "adamw", "weight_decay": 0.01},
        )
        train(model, table, None, build_strategy(strategy, model.task_names), cfg)
        return model

    full = run(3, tmp_path / "full")
    run(2, tmp_path / "part")
    resumed = run(3, tmp_path / "part")
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_clip_grad_norm_handles_sparse_rows() -> None:
    p = torch.nn.Parameter(torch.zeros(6, 2))
    q = torch.nn.Parameter(torch.zeros(3))
    rows = torch.tensor([1, 1, 4])  # uncoalesced: row 1 twice
    values = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    p.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, (6, 2))
    q.grad = torch.tensor([0.0, 0.0, 0.0])
    total = clip_grad_norm_([p, q], 1.0)
    torch.testing.assert_close(total, torch.tensor(5.0))  # ||(4, 3)||
    torch.testing.assert_close(
        p.grad.to_dense()[[1, 4]],
        torch.tensor([[0.8, 0.0], [0.0, 0.6]]),
        atol=1e-5,
        rtol=0,
    )
