"""Contract tests over the model registry: every architecture, same promises.

Parametrised over :func:`available_models`; which models take three tasks or
a regression task follows from their class attributes (``requires_funnel``,
``supports_regression``), so a registered model is checked without an entry
here.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mtl_reco.modeling.models.base import ModelContractError, MultiTaskModel
from mtl_reco.modeling.models.registry import (
    available_models,
    get_model_class,
    model_from_spec,
)
from mtl_reco.schema import FeatureSchema, TaskSpec

from ..conftest import make_small_model, random_inputs

MODELS = available_models()
# A funnel model predicts exactly the click and conversion tasks of the funnel.
ANY_TASKS = [m for m in MODELS if not get_model_class(m).requires_funnel]
REGRESSION = [m for m in MODELS if get_model_class(m).supports_regression]
CLASSIFICATION_ONLY = [m for m in MODELS if m not in REGRESSION]


def _labels(
    model: MultiTaskModel, n_rows: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        t.name: (
            torch.randint(0, 2, (n_rows,), generator=gen).float()
            if t.type == "classification"
            else torch.randn(n_rows, generator=gen)
        )
        for t in model.tasks
    }


def _head_loss(model: MultiTaskModel, outputs, labels, name: str) -> torch.Tensor:
    if model.task_types[name] == "classification":
        return F.binary_cross_entropy_with_logits(outputs[name], labels[name])
    return F.mse_loss(outputs[name], labels[name])


def _total_loss(model, outputs, labels) -> torch.Tensor:
    total = sum(_head_loss(model, outputs, labels, t) for t in model.task_names)
    aux = model.auxiliary_loss(outputs)
    return total + aux if aux is not None else total


@pytest.mark.parametrize("name", MODELS)
def test_registry_name_class_and_config(name):
    cls = get_model_class(name)
    assert issubclass(cls, MultiTaskModel) and cls.name == name
    assert cls.config_cls().to_dict() == cls.config_cls.from_dict({}).to_dict()
    assert isinstance(cls.supports_regression, bool)
    assert isinstance(cls.requires_funnel, bool)


@pytest.mark.parametrize("name", MODELS)
def test_outputs_keys_shapes_and_ranges(name, tiny_schema):
    model = make_small_model(name, tiny_schema)
    sparse, dense = random_inputs(tiny_schema, 13)
    outputs = model(sparse, dense)
    assert list(outputs) == list(model.output_names)
    assert set(model.task_names) <= set(model.output_names)
    assert model.task_names == ("ctr", "ctcvr")
    for value in outputs.values():
        assert value.shape == (13,) and value.dtype == torch.float32
        assert bool(torch.isfinite(value).all())
    model.eval()
    with torch.no_grad():
        preds = model.predict(sparse, dense)
    for value in preds.values():
        assert bool(((value >= 0) & (value <= 1)).all())
    assert not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
    )


@pytest.mark.parametrize("name", MODELS)
def test_every_loss_head_reaches_every_shared_parameter(name, tiny_schema):
    model = make_small_model(name, tiny_schema)
    sparse, dense = random_inputs(tiny_schema, 64, seed=1)
    labels = _labels(model, 64)
    shared = model.shared_parameters()
    assert shared, "a multi-task model shares something"
    for head in model.task_names:
        model.zero_grad(set_to_none=True)
        _head_loss(model, model(sparse, dense), labels, head).backward()
        for p in shared:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, (
                f"{name}: the {head} loss does not reach a shared parameter {p.shape}"
            )


@pytest.mark.parametrize("name", MODELS)
def test_last_shared_layer_is_shared_and_not_an_embedding(name, tiny_schema):
    model = make_small_model(name, tiny_schema)
    last = model.last_shared_layer()
    assert isinstance(last, nn.Parameter) and last.dim() >= 2
    assert any(last is p for p in model.shared_parameters())
    assert all(last is not p for p in model.embedding.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_parameter_roles_are_disjoint_and_complete(name, tiny_schema):
    model = make_small_model(name, tiny_schema)
    owned = model.task_parameters()
    assert list(owned) == list(model.task_names)
    groups = [model.shared_parameters(), *owned.values()]
    ids = [id(p) for group in groups for p in group]
    assert len(ids) == len(set(ids)), "a parameter is listed twice"
    assert set(ids) == {id(p) for p in model.parameters()}
    # ... and every parameter gets a gradient from the total loss
    sparse, dense = random_inputs(tiny_schema, 64, seed=2)
    labels = _labels(model, 64)
    _total_loss(model, model(sparse, dense), labels).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, pname


# PLE with a single level: every task-owned parameter is reached by its task only.
# (With 2+ levels, lower-level task experts also feed the shared gate: documented.)
EXCLUSIVE = {"ple": {"n_levels": 1}}


@pytest.mark.parametrize("name", MODELS)
def test_task_parameters_get_gradient_only_from_their_task(name, tiny_schema):
    model = make_small_model(name, tiny_schema, **EXCLUSIVE.get(name, {}))
    sparse, dense = random_inputs(tiny_schema, 64, seed=3)
    labels = _labels(model, 64)
    owned = model.task_parameters()
    for head in model.task_names:
        model.zero_grad(set_to_none=True)
        _head_loss(model, model(sparse, dense), labels, head).backward()
        for task, params in owned.items():
            for p in params:
                reached = p.grad is not None and float(p.grad.abs().sum()) > 0
                assert reached == (task == head), (name, head, task, p.shape)


def test_multi_level_ple_lower_task_experts_are_the_documented_exception(
    tiny_schema,
):
    model = make_small_model("ple", tiny_schema, n_levels=2)
    sparse, dense = random_inputs(tiny_schema, 32)
    labels = _labels(model, 32)
    model.zero_grad(set_to_none=True)
    _head_loss(model, model(sparse, dense), labels, "ctr").backward()
    lower_ctcvr = model.levels[0].specific[1].last_layer_weight()
    upper_ctcvr = model.levels[1].specific[1].last_layer_weight()
    assert lower_ctcvr.grad is not None and float(lower_ctcvr.grad.abs().sum()) > 0
    assert upper_ctcvr.grad is None
    assert all(lower_ctcvr is not p for p in model.shared_parameters())


def _train_steps(name, schema, n_steps=3, seed=0):
    model = make_small_model(name, schema, seed=seed, dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(seed)
    for step in range(n_steps):
        sparse, dense = random_inputs(schema, 32, seed=step)
        labels = _labels(model, 32, seed=step)
        opt.zero_grad(set_to_none=True)
        _total_loss(model, model(sparse, dense), labels).backward()
        opt.step()
    sparse, dense = random_inputs(schema, 8, seed=99)
    model.eval()
    with torch.no_grad():
        outputs = model(sparse, dense)
    return model, outputs


@pytest.mark.parametrize("name", MODELS)
def test_seeded_training_is_deterministic(name, tiny_schema):
    model_a, out_a = _train_steps(name, tiny_schema, seed=4)
    model_b, out_b = _train_steps(name, tiny_schema, seed=4)
    for key in out_a:
        assert torch.equal(out_a[key], out_b[key])
    for (ka, pa), (kb, pb) in zip(
        model_a.state_dict().items(), model_b.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(pa, pb)
    _, out_c = _train_steps(name, tiny_schema, seed=5)
    assert not torch.equal(out_a["ctr"], out_c["ctr"])


@pytest.mark.parametrize("name", MODELS)
def test_final_batch_of_one_row_trains(name, tiny_schema):
    model = make_small_model(name, tiny_schema, dropout=0.2).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sparse, dense = random_inputs(tiny_schema, 1, seed=7)
    labels = _labels(model, 1)
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    outputs = model(sparse, dense)
    assert all(v.shape == (1,) for v in outputs.values())
    loss = _total_loss(model, outputs, labels)
    assert bool(torch.isfinite(loss))
    loss.backward()
    opt.step()
    assert any(
        not torch.equal(b, p.detach())
        for b, p in zip(before, model.parameters(), strict=True)
    )


@pytest.mark.parametrize("name", MODELS)
def test_spec_rebuilds_the_same_model(name, tiny_schema):
    model = make_small_model(name, tiny_schema, dropout=0.1, embedding_dim=4)
    rebuilt = model_from_spec(model.spec())
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    sparse, dense = random_inputs(tiny_schema, 5)
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        for key, value in model(sparse, dense).items():
            torch.testing.assert_close(rebuilt(sparse, dense)[key], value)


@pytest.mark.parametrize("name", MODELS)
def test_wrong_config_type_and_single_task_rejected(name, tiny_schema):
    other = "mmoe" if name != "mmoe" else "ple"
    wrong = make_small_model(other, tiny_schema).config
    with pytest.raises(ModelContractError, match="expects a"):
        type(make_small_model(name, tiny_schema))(tiny_schema, None, wrong)
    with pytest.raises(ModelContractError, match="at least 2 tasks"):
        make_small_model(name, tiny_schema, tasks=["ctr"])


def _three_task_schema(base: FeatureSchema) -> FeatureSchema:
    return FeatureSchema(
        sparse=base.sparse,
        dense=base.dense,
        tasks=(TaskSpec("view"), TaskSpec("click"), TaskSpec("buy")),
    )


@pytest.mark.parametrize("name", ANY_TASKS)
def test_three_tasks(name, tiny_schema):
    schema = _three_task_schema(tiny_schema)
    model = make_small_model(name, schema)
    sparse, dense = random_inputs(schema, 6)
    outputs = model(sparse, dense)
    assert list(outputs) == ["view", "click", "buy"]
    labels = _labels(model, 6)
    for head in model.task_names:
        model.zero_grad(set_to_none=True)
        _head_loss(model, model(sparse, dense), labels, head).backward()
        assert all(
            p.grad is not None and float(p.grad.abs().sum()) > 0
            for p in model.shared_parameters()
        )


@pytest.mark.parametrize("name", REGRESSION)
def test_regression_task_outputs_raw_values(name, regression_schema):
    model = make_small_model(name, regression_schema).eval()
    assert model.task_types == {"ctr": "classification", "value": "regression"}
    sparse, dense = random_inputs(regression_schema, 9)
    with torch.no_grad():
        raw = model(sparse, dense)
        preds = model.predict(sparse, dense)
    torch.testing.assert_close(preds["value"], raw["value"])
    torch.testing.assert_close(preds["ctr"], torch.sigmoid(raw["ctr"]))


@pytest.mark.parametrize("name", CLASSIFICATION_ONLY)
def test_regression_rejected_by_classification_only_models(name, regression_schema):
    with pytest.raises(ModelContractError, match=r"classification tasks only.*value"):
        make_small_model(name, regression_schema)
