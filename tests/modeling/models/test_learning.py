"""Every model learns the planted signal (held-out AUC well above 0.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch.nn import functional as F

from mtl_reco.modeling.data import TensorTable
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.models.registry import available_models, get_model_class

from ..conftest import make_small_model

pytestmark = pytest.mark.slow


def fit(
    model: MultiTaskModel,
    table: TensorTable,
    *,
    epochs: int = 4,
    batch_size: int = 256,
    lr: float = 3e-3,
    seed: int = 0,
) -> None:
    """A plain training loop: summed per-task losses (+ auxiliary), Adam."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in table.batches(batch_size, shuffle=True, generator=gen):
            outputs = model(batch.sparse, batch.dense)
            loss = torch.zeros(())
            for name in model.task_names:
                label = batch.labels[:, table.task_names.index(name)]
                if model.task_types[name] == "classification":
                    loss = loss + F.binary_cross_entropy_with_logits(
                        outputs[name], label
                    )
                else:
                    loss = loss + F.mse_loss(outputs[name], label)
            aux = model.auxiliary_loss(outputs)
            if aux is not None:
                loss = loss + aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def predict(model: MultiTaskModel, table: TensorTable) -> dict[str, np.ndarray]:
    model.eval()
    with torch.no_grad():
        return {
            k: v.numpy() for k, v in model.predict(table.sparse, table.dense).items()
        }


@pytest.mark.parametrize("name", available_models())
def test_model_learns_planted_signal(name, tiny_schema, planted_tables):
    model = make_small_model(name, tiny_schema, seed=1)
    fit(model, planted_tables["train"])
    test = planted_tables["test"]
    preds = predict(model, test)
    labels = test.labels_dict()
    oracle = {
        "ctr": roc_auc_score(labels["ctr"], test.extras["true_pctr"]),
        "ctcvr": roc_auc_score(labels["ctcvr"], test.extras["true_pctcvr"]),
    }
    for task in ("ctr", "ctcvr"):
        auc = roc_auc_score(labels[task], preds[task])
        assert auc > 0.7, f"{name} {task}: AUC {auc:.3f}"
        assert auc > oracle[task] - 0.04, (
            f"{name} {task}: AUC {auc:.3f} vs oracle {oracle[task]:.3f}"
        )


def test_esmm_latent_cvr_ranks_clicked_rows(tiny_schema, planted_tables):
    """pCVR is never supervised directly, yet it ranks conversions among clicks."""
    model = make_small_model("esmm", tiny_schema, seed=1)
    fit(model, planted_tables["train"])
    test = planted_tables["test"]
    clicked = test.subset(test.label("ctr") == 1)
    preds = predict(model, clicked)
    auc = roc_auc_score(clicked.label("ctcvr").numpy(), preds["cvr"])
    oracle = roc_auc_score(clicked.label("ctcvr").numpy(), clicked.extras["true_pcvr"])
    assert auc > 0.65 and auc > oracle - 0.08, (auc, oracle)


@pytest.mark.parametrize(
    "name",
    [m for m in available_models() if get_model_class(m).supports_regression],
)
def test_regression_task_learns(name, regression_schema, regression_tables):
    model = make_small_model(name, regression_schema, seed=2)
    fit(model, regression_tables["train"], epochs=3)
    test = regression_tables["test"]
    preds = predict(model, test)
    value = test.label("value").numpy()
    r2 = 1 - np.mean((preds["value"] - value) ** 2) / np.var(value)
    assert r2 > 0.6, f"{name}: R^2 {r2:.3f}"
    assert roc_auc_score(test.label("ctr").numpy(), preds["ctr"]) > 0.7
