"""Opt-in expert kernels: every layout computes ExpertBank's function and gradient."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

from mtl_reco.modeling.kernels import experts
from mtl_reco.modeling.kernels.experts import (
    BmmExpertBank,
    ExpertLayout,
    ManualExpertBank,
    PerExpertBank,
    expert_bank_class,
    kernels_allowed,
    run_expert_banks,
)
from mtl_reco.modeling.layers import ExpertBank

EXPERT_LAYOUTS = get_args(ExpertLayout)


@pytest.mark.parametrize("dims", [[8], [8, 6], [8, 6, 5]])
def test_expert_layouts_compute_the_same_function(dims):
    torch.manual_seed(0)
    banks = {}
    for layout in ("per_expert", "fused", "bmm", "manual"):
        banks[layout] = expert_bank_class(layout)(7, 3, dims)
    state = banks["per_expert"].state_dict()
    for bank in banks.values():
        bank.load_state_dict(state)  # same parameter layout for every layout
    x = torch.randn(11, 7)
    outs, grads = {}, {}
    for layout, bank in banks.items():
        out = bank(x)
        assert out.shape == (11, 3, dims[-1])
        (out * torch.arange(dims[-1])).sum().backward()
        outs[layout] = out.detach()
        grads[layout] = [p.grad.clone() for p in bank.parameters()]
    for layout in ("fused", "bmm", "manual"):
        torch.testing.assert_close(outs[layout], outs["per_expert"])
        for g, ref in zip(grads[layout], grads["per_expert"], strict=True):
            torch.testing.assert_close(g, ref)
    # expert e of the bank equals an independent MLP with expert e's weights
    bank = banks["per_expert"]
    h = x
    for w, b in zip(bank.weights, bank.biases, strict=True):
        h = torch.relu(h @ w[1].T + b[1])
    torch.testing.assert_close(outs["fused"][:, 1], h)


def test_expert_layout_resolution():
    assert expert_bank_class("auto") is ExpertBank
    assert expert_bank_class("fused") is ExpertBank
    assert expert_bank_class("bmm") is BmmExpertBank
    assert expert_bank_class("per_expert") is PerExpertBank
    assert expert_bank_class("manual") is ManualExpertBank
    # the hand-written kernels implement ReLU experts without dropout only
    assert expert_bank_class("manual", "gelu") is ExpertBank
    assert expert_bank_class("manual", dropout=0.1) is ExpertBank
    assert {c.layout for c in map(expert_bank_class, EXPERT_LAYOUTS)} == {
        "fused",
        "per_expert",
        "bmm",
        "manual",
    }
    with pytest.raises(ValueError, match="unknown expert layout"):
        expert_bank_class("einsum")


def _clone_banks(banks, layout):
    cls = expert_bank_class(layout)
    clones = [cls(b.in_dim, b.n_experts, b.dims) for b in banks]
    for clone, bank in zip(clones, banks, strict=True):
        clone.load_state_dict(bank.state_dict())
    return [c.double() for c in clones]


@pytest.mark.parametrize("dims", [[6], [6, 5], [6, 5, 4]])
def test_run_expert_banks_matches_separate_banks(dims):
    torch.manual_seed(3)
    banks = [ManualExpertBank(7, e, dims).double() for e in (2, 3, 1)]
    refs = _clone_banks(banks, "per_expert")
    x = torch.randn(9, 7, dtype=torch.float64, requires_grad=True)
    y = torch.randn(9, 7, dtype=torch.float64, requires_grad=True)
    # banks 0 and 1 read the same tensor (one first-layer GEMM), bank 2 another
    out = run_expert_banks(banks, [x, x, y])
    ref = torch.cat([bank(i) for bank, i in zip(refs, [x, x, y], strict=True)], 1)
    torch.testing.assert_close(out, ref)
    weight = torch.randn_like(ref)
    params = [p for b in banks for p in b.parameters()]
    ref_params = [p for b in refs for p in b.parameters()]
    got = torch.autograd.grad((out * weight).sum(), [x, y, *params])
    want = torch.autograd.grad((ref * weight).sum(), [x, y, *ref_params])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    assert torch.autograd.gradcheck(
        lambda a, b: run_expert_banks(banks, [a, a, b]), (x, y)
    )


def test_manual_backward_computes_only_what_is_asked(monkeypatch):
    calls = []
    original = experts._ReluFirstLayer.backward

    def counted(ctx, grad):
        calls.append(1)
        return original(ctx, grad)

    monkeypatch.setattr(experts._ReluFirstLayer, "backward", staticmethod(counted))
    torch.manual_seed(4)
    bank = ManualExpertBank(7, 3, [8, 6])
    ref = ExpertBank(7, 3, [8, 6])
    ref.load_state_dict(bank.state_dict())
    x = torch.randn(5, 7, requires_grad=True) * 2  # not a leaf
    # GradNorm asks for the last layer's gradient only: the first layer's
    # backward does not run at all
    got = torch.autograd.grad(bank(x).square().sum(), [bank.last_layer_weight()])
    want = torch.autograd.grad(ref(x).square().sum(), [ref.last_layer_weight()])
    torch.testing.assert_close(got[0], want[0])
    assert calls == []
    got = torch.autograd.grad(bank(x).square().sum(), [bank.weights[0]])
    want = torch.autograd.grad(ref(x).square().sum(), [ref.weights[0]])
    torch.testing.assert_close(got[0], want[0])
    assert calls == [1]


def test_fast_kernels_off_while_tracing():
    x = torch.randn(3, 4)
    assert kernels_allowed(x)
    seen = []

    def probe(t):
        seen.append(kernels_allowed(t))
        return t * 2

    torch.jit.trace(probe, (x,), check_trace=False)
    assert seen == [False]
