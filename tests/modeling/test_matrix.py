"""Every model x every weighting strategy trains (the matrix peers skip).

Both axes come from the registries (a registered model or strategy joins the
matrix by itself); every model that declares ``supports_regression`` also
trains with a regression task. Tiny dimensions (:func:`shrunk_config`), two
epochs of a few batches each; the last batch of every epoch has ONE row (a
BatchNorm-in-gates crash case). Losses must stay finite, task weights finite
and positive, and the parameters must move.
"""

from __future__ import annotations

import math

import pytest
import torch

from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.data import TensorTable
from mtl_reco.modeling.models.registry import available_models, get_model_class
from mtl_reco.modeling.trainer import train
from mtl_reco.modeling.weighting.registry import available_strategies, build_strategy

from .conftest import (
    build_regression_schema,
    build_tiny_schema,
    make_small_model,
    shrunk_config,
)

ROWS = 3 * 32 + 1  # three full batches and one batch of a single row
REGRESSION_MODELS = [
    name for name in available_models() if get_model_class(name).supports_regression
]


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tables(
    planted_tables: dict[str, TensorTable], regression_tables: dict[str, TensorTable]
) -> dict[str, TensorTable]:
    idx = torch.arange(ROWS)
    return {
        "classification": planted_tables["train"].subset(idx),
        "regression": regression_tables["train"].subset(idx),
        "valid": planted_tables["valid"].subset(torch.arange(200)),
    }


def _check(
    model_name: str,
    strategy_name: str,
    schema_kind: str,
    tables: dict[str, TensorTable],
) -> None:
    schema = (
        build_tiny_schema(4)
        if schema_kind == "classification"
        else build_regression_schema(4)
    )
    model = make_small_model(model_name, schema, **shrunk_config(model_name, "tiny"))
    before = [p.detach().clone() for p in model.parameters()]
    strategy = build_strategy(strategy_name, model.task_names)
    cfg = TrainerConfig(
        epochs=2,
        batch_size=32,
        device="cpu",
        progress=False,
        optimizer={"lr": 0.01},
        early_stopping={"patience": 0},
    )
    valid = tables["valid"] if schema_kind == "classification" else None
    result = train(model, tables[schema_kind], valid, strategy, cfg)
    assert result.epochs_run == 2
    for record in result.history:
        for task in model.task_names:
            assert math.isfinite(record["train_loss"][task]), (task, record)
        assert set(record["weights"]) == set(model.task_names)
        for weight in record["weights"].values():
            assert math.isfinite(weight) and weight > 0, record["weights"]
    for weight in strategy.current_weights().values():
        assert math.isfinite(weight) and weight > 0
    for p in model.parameters():
        assert torch.isfinite(p).all()
    assert any(
        not torch.equal(p.detach(), b)
        for p, b in zip(model.parameters(), before, strict=True)
    )
    if valid is not None:
        assert 0.0 <= result.history[-1]["valid"]["mean.auc"] <= 1.0


@pytest.mark.parametrize("strategy_name", available_strategies())
@pytest.mark.parametrize("model_name", available_models())
def test_model_x_strategy_trains(
    model_name: str, strategy_name: str, tables: dict[str, TensorTable]
) -> None:
    _check(model_name, strategy_name, "classification", tables)


@pytest.mark.parametrize("strategy_name", available_strategies())
@pytest.mark.parametrize("model_name", REGRESSION_MODELS)
def test_model_x_strategy_with_a_regression_task(
    model_name: str, strategy_name: str, tables: dict[str, TensorTable]
) -> None:
    _check(model_name, strategy_name, "regression", tables)
