"""``check_parity`` detects a model that no longer matches its ONNX file."""

from __future__ import annotations

import pytest
import torch

from mtl_reco.modeling.export import check_parity, export_onnx
from mtl_reco.modeling.models.registry import build_model
from mtl_reco.schema import (
    DenseFeature,
    FeatureSchema,
    Funnel,
    SparseFeature,
    TaskSpec,
)

SCHEMA = FeatureSchema(
    sparse=(SparseFeature("user", 9, 4), SparseFeature("item", 6, 4)),
    dense=(DenseFeature("d0"),),
    tasks=(TaskSpec("ctr"), TaskSpec("ctcvr")),
    funnel=Funnel("ctr", "ctcvr"),
)


def _inputs(n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    sparse = torch.stack(
        [
            torch.randint(0, f.cardinality, (n_rows,), generator=gen)
            for f in SCHEMA.sparse
        ],
        dim=1,
    )
    return sparse, torch.randn(n_rows, 1, generator=gen)


def test_parity_measures_a_model_changed_after_export(tmp_path):
    torch.manual_seed(0)
    model = build_model("esmm", SCHEMA, None, {"ctr_dims": [6], "cvr_dims": [4]})
    path = tmp_path / "esmm.onnx"
    export_onnx(model, path)
    inputs = _inputs(23)
    assert check_parity(model, path, inputs) <= 1e-5  # the file matches

    model.eval()
    with torch.no_grad():
        before = model.predict(*inputs)
        # the file keeps the old weights; the CVR head moves (ctcvr and cvr)
        dict(model.named_parameters())["cvr_tower.head.bias"].add_(0.8)
        after = model.predict(*inputs)
    model.train()
    moved = max(float((after[k] - before[k]).abs().max()) for k in before)
    assert moved > 0.01
    worst = check_parity(model, path, inputs)
    assert worst == pytest.approx(moved, abs=1e-5)
    assert not worst <= 1e-5
