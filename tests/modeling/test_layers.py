"""Layers: grouped embedding, MLP/tower, gates, expert bank layouts, mixtures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl_reco.modeling.layers import (
    MLP,
    ExpertBank,
    FeatureEmbedding,
    SoftmaxGate,
    Tower,
    mix_expert_groups,
    mix_experts,
)
from mtl_reco.schema import (
    DenseFeature,
    FeatureSchema,
    SparseFeature,
    TaskSpec,
)

from .conftest import random_inputs


def _schema(dims: tuple[int, ...], n_dense: int = 2) -> FeatureSchema:
    return FeatureSchema(
        sparse=tuple(SparseFeature(f"f{j}", 5 + j, d) for j, d in enumerate(dims)),
        dense=tuple(DenseFeature(f"x{j}") for j in range(n_dense)),
        tasks=(TaskSpec("a"), TaskSpec("b")),
    )


def test_single_table_with_offsets_matches_per_field_lookup():
    schema = _schema((4, 4, 4))
    emb = FeatureEmbedding(schema)
    assert len(emb.tables) == 1
    assert emb.tables[0].shape == (5 + 6 + 7, 4)
    assert emb.output_dim == 3 * 4 + 2
    sparse, dense = random_inputs(schema, 9, seed=3)
    out = emb(sparse, dense)
    assert out.shape == (9, 14)
    table = emb.tables[0]
    offsets = [0, 5, 11]
    for j in range(3):
        expected = table[sparse[:, j].long() + offsets[j]]
        torch.testing.assert_close(out[:, 4 * j : 4 * (j + 1)], expected)
    torch.testing.assert_close(out[:, 12:], dense)  # dense appended raw


def test_fields_grouped_by_dim():
    schema = _schema((4, 8, 4))
    emb = FeatureEmbedding(schema)
    assert emb.group_dims == (4, 8)
    assert [tuple(t.shape) for t in emb.tables] == [(5 + 7, 4), (6, 8)]
    sparse, dense = random_inputs(schema, 5, seed=1)
    out = emb(sparse, dense)
    assert out.shape == (5, 4 + 8 + 4 + 2)
    small, big = emb.tables
    # group of size 4 (fields 0 and 2) first, then the size-8 group, then dense
    torch.testing.assert_close(out[:, 0:4], small[sparse[:, 0].long()])
    torch.testing.assert_close(out[:, 4:8], small[sparse[:, 2].long() + 5])
    torch.testing.assert_close(out[:, 8:16], big[sparse[:, 1].long()])
    torch.testing.assert_close(out[:, 16:], dense)


def test_embedding_dim_override_makes_one_table():
    emb = FeatureEmbedding(_schema((4, 8, 4)), embedding_dim=6)
    assert emb.group_dims == (6,)
    assert emb.output_dim == 3 * 6 + 2


def test_int64_ids_and_gradient_reaches_only_used_rows():
    schema = _schema((3, 3))
    emb = FeatureEmbedding(schema)
    sparse = torch.tensor([[1, 2]], dtype=torch.int64)
    emb(sparse, torch.zeros(1, 2)).sum().backward()
    grad = emb.tables[0].grad
    assert grad is not None
    used = torch.zeros(11, dtype=torch.bool)
    used[[1, 5 + 2]] = True
    assert bool((grad[used] != 0).all()) and bool((grad[~used] == 0).all())


def test_check_ids_names_the_bad_field():
    schema = _schema((3, 3))
    emb = FeatureEmbedding(schema)
    emb.check_ids(torch.tensor([[4, 5]]))  # last valid ids: no error
    with pytest.raises(ValueError, match=r"f1 \(cardinality 6\)"):
        emb.check_ids(torch.tensor([[0, 6]]))
    with pytest.raises(ValueError, match="f0"):
        emb.check_ids(torch.tensor([[-1, 0]]))
    with pytest.raises(ValueError, match="expected 2 sparse columns"):
        emb.check_ids(torch.zeros(1, 3, dtype=torch.int64))
    # non-persistent: the state dict holds only the tables and offsets
    assert "cardinalities" not in emb.state_dict()


def test_sparse_only_and_dense_only():
    sparse_only = _schema((4,), n_dense=0)
    emb = FeatureEmbedding(sparse_only)
    sparse, dense = random_inputs(sparse_only, 3)
    assert emb(sparse, dense).shape == (3, 4)
    dense_only = FeatureSchema(
        sparse=(), dense=(DenseFeature("x"),), tasks=(TaskSpec("a"), TaskSpec("b"))
    )
    emb = FeatureEmbedding(dense_only)
    x = torch.randn(3, 1)
    torch.testing.assert_close(emb(torch.zeros(3, 0, dtype=torch.int32), x), x)


def test_mlp_and_tower_shapes():
    mlp = MLP(7, [5, 3], "gelu", dropout=0.1)
    assert mlp.out_dim == 3 and len(mlp.linears()) == 2
    assert mlp(torch.randn(4, 7)).shape == (4, 3)
    identity = MLP(7, [])
    x = torch.randn(2, 7)
    assert identity.out_dim == 7 and torch.equal(identity(x), x)
    tower = Tower(7, [4])
    assert tower(torch.randn(6, 7)).shape == (6,)
    assert Tower(7, [])(torch.randn(1, 7)).shape == (1,)
    with pytest.raises(ValueError, match="unknown activation"):
        MLP(3, [2], "swish")


def test_softmax_gate_sums_to_one_and_trains_on_one_row():
    gate = SoftmaxGate(6, 5).train()
    w = gate(torch.randn(1, 6) * 10)
    assert w.shape == (1, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(1))
    assert bool((w >= 0).all())
    w[0, 0].backward()
    assert gate.linear.weight.grad is not None
    assert not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in gate.modules()
    )


def test_expert_bank_few_tensors_and_last_layer():
    bank = ExpertBank(10, 8, [16, 4])
    assert len(list(bank.parameters())) == 4
    assert bank.last_layer_weight().shape == (8, 4, 16)
    assert bank.layout == "fused"
    with pytest.raises(ValueError, match="at least one hidden layer"):
        ExpertBank(3, 2, [])


def test_expert_bank_expert_is_an_independent_mlp():
    torch.manual_seed(0)
    bank = ExpertBank(7, 3, [8, 6])
    x = torch.randn(11, 7)
    h = x
    for w, b in zip(bank.weights, bank.biases, strict=True):
        h = torch.relu(h @ w[1].T + b[1])
    torch.testing.assert_close(bank(x)[:, 1], h)


def test_mixtures_match_explicit_sums():
    torch.manual_seed(1)
    experts = torch.randn(5, 3, 4)
    weights = torch.softmax(torch.randn(5, 2, 3), -1)
    mixed = mix_experts(weights, experts)
    expected = (weights.unsqueeze(-1) * experts.unsqueeze(1)).sum(2)
    torch.testing.assert_close(mixed, expected)
    torch.testing.assert_close(mix_experts(weights[:, 0], experts), expected[:, 0])
    other = torch.randn(5, 2, 4)
    w = torch.softmax(torch.randn(5, 5), -1)
    torch.testing.assert_close(
        mix_expert_groups(w, [experts, other]),
        mix_experts(w, torch.cat([experts, other], dim=1)),
    )
    # a transposed (non-contiguous) expert view works too
    view = experts.transpose(0, 1).contiguous().transpose(0, 1)
    torch.testing.assert_close(mix_experts(weights, view), expected)
