"""ONNX export: parity with PyTorch, sanitised names, dynamic batch, predictor."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pandas as pd
import pytest
import torch

from mtl_reco.modeling import export as export_module
from mtl_reco.modeling.export import (
    ExportError,
    check_parity,
    export_onnx,
    sanitize_name,
)
from mtl_reco.modeling.models.registry import available_models
from mtl_reco.schema import (
    DenseFeature,
    FeatureSchema,
    Funnel,
    SparseFeature,
    TaskSpec,
)
from mtl_reco.serving import ModelFileError, OnnxPredictor

from .conftest import make_small_model, random_inputs

MODELS = available_models()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_schema):
    """Every model exported once, when first asked for (training mode, dropout)."""
    folder = tmp_path_factory.mktemp("onnx")

    class Exports(dict):
        def __missing__(self, name):
            model = make_small_model(name, tiny_schema, dropout=0.2).train()
            path = folder / name / f"{name}.onnx"
            self[name] = (model, path, export_onnx(model, path))
            return self[name]

    return Exports()


@pytest.mark.parametrize("name", MODELS)
def test_parity_at_batch_1_and_37(name, exported, tiny_schema):
    model, path, _ = exported[name]
    for n_rows in (1, 37):
        diff = check_parity(
            model, path, random_inputs(tiny_schema, n_rows, seed=n_rows)
        )
        assert diff <= 1e-5, f"{name} at batch {n_rows}: {diff}"


@pytest.mark.parametrize("name", MODELS)
def test_export_file_io_and_mode(name, exported, tiny_schema):
    model, path, description = exported[name]
    assert model.training, "export must restore the training mode"
    assert description["exporter"] == "dynamo"
    assert description["opset"] == 18
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # one file
    proto = onnx.load(str(path))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 18
    inputs = {i.name: i for i in proto.graph.input}
    assert list(inputs) == [
        "sparse_user",
        "sparse_item",
        "sparse_cat",
        "dense_d0",
        "dense_d1",
        "dense_d2",
    ]
    for graph_input in inputs.values():
        dims = graph_input.type.tensor_type.shape.dim
        assert len(dims) == 1 and dims[0].dim_param  # symbolic batch dimension
    assert inputs["sparse_user"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert inputs["dense_d0"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in proto.graph.output] == list(model.output_names)
    kinds = {o["output"]: o["kind"] for o in description["outputs"]}
    assert set(kinds.values()) == {"probability"}
    heads = {o["output"]: o["loss_head"] for o in description["outputs"]}
    assert heads == {n: n in model.task_names for n in model.output_names}


def test_predictor_predict_and_frame(exported, planted_frames, planted_tables):
    model, path, _ = exported["esmm"]
    predictor = OnnxPredictor(path)
    assert predictor.output_names == ["ctr", "ctcvr", "cvr"]
    assert predictor.input_names[0] == "sparse_user"
    table = planted_tables["valid"]
    full = predictor.predict(table.sparse.numpy(), table.dense.numpy())
    chunked = predictor.predict(table.sparse.numpy(), table.dense.numpy(), batch_size=7)
    framed = predictor.predict_frame(planted_frames["valid"])
    model.eval()
    with torch.no_grad():
        expected = model.predict(table.sparse, table.dense)
    model.train()
    for name in predictor.output_names:
        assert full[name].shape == (len(table),)
        np.testing.assert_allclose(full[name], expected[name].numpy(), atol=1e-5)
        # GEMM blocking differs with the batch size: equal up to float rounding
        np.testing.assert_allclose(chunked[name], full[name], atol=1e-6)
        np.testing.assert_array_equal(framed[name], full[name])
    np.testing.assert_allclose(full["ctcvr"], full["ctr"] * full["cvr"], atol=1e-6)
    assert check_parity(model, path, table, max_rows=None) <= 1e-5
    with pytest.raises(ValueError, match="lacks the model's input columns"):
        predictor.predict_frame(planted_frames["valid"].drop(columns=["item"]))


def _odd_schema() -> FeatureSchema:
    return FeatureSchema(
        sparse=(
            SparseFeature("101", 30, 4),
            SparseFeature("a-b", 20, 4),
            SparseFeature("a_b", 10, 8),
            SparseFeature("205", 5, 4),
        ),
        dense=(DenseFeature("D 508"), DenseFeature("1.5x")),
        tasks=(TaskSpec("click"), TaskSpec("buy")),
        funnel=Funnel("click", "buy"),
    )


def test_sanitised_names_and_dynamic_batch(tmp_path):
    schema = _odd_schema()
    model = make_small_model("mmoe", schema)
    path = tmp_path / "odd.onnx"
    description = export_onnx(model, path, example_batch=random_inputs(schema, 1))
    names = [i["name"] for i in description["inputs"]]
    assert names == [
        "sparse_101",
        "sparse_a_b",
        "sparse_a_b_2",
        "sparse_205",
        "dense_D_508",
        "dense_1_5x",
    ]
    assert description["name_map"]["sparse_a_b_2"] == "a_b"
    assert description["name_map"]["dense_1_5x"] == "1.5x"
    predictor = OnnxPredictor(path)
    assert predictor.input_names == names
    for n_rows in (1, 37, 300):
        assert check_parity(model, path, random_inputs(schema, n_rows, n_rows)) <= 1e-5
    sparse, dense = random_inputs(schema, 12, seed=3)
    frame = pd.DataFrame(
        {f.name: sparse[:, j].numpy() for j, f in enumerate(schema.sparse)}
        | {f.name: dense[:, j].numpy() for j, f in enumerate(schema.dense)}
    )
    by_frame = predictor.predict_frame(frame)
    by_matrix = predictor.predict(sparse.numpy(), dense.numpy())
    for name in ("click", "buy"):
        np.testing.assert_array_equal(by_frame[name], by_matrix[name])


def test_sanitize_name():
    assert sanitize_name("101", "sparse_") == "sparse_101"
    assert sanitize_name("a-b.c d") == "a_b_c_d"
    assert sanitize_name("9lives") == "_9lives"
    assert sanitize_name("") == "_"


def test_regression_output_is_raw_value(tmp_path, regression_schema):
    model = make_small_model("ple", regression_schema, n_levels=1)
    with torch.no_grad():
        model.towers[1].head.bias.fill_(5.0)  # a value far outside [0, 1]
    description = export_onnx(model, tmp_path / "reg.onnx")
    kinds = {o["output"]: o["kind"] for o in description["outputs"]}
    assert kinds == {"ctr": "probability", "value": "value"}
    got = OnnxPredictor(tmp_path / "reg.onnx").predict(
        *(t.numpy() for t in random_inputs(regression_schema, 9))
    )
    assert float(got["value"].mean()) > 2
    assert bool(((got["ctr"] > 0) & (got["ctr"] < 1)).all())
    assert (
        check_parity(model, tmp_path / "reg.onnx", random_inputs(regression_schema, 37))
        <= 1e-5
    )


def test_legacy_exporter_and_fallback(tmp_path, tiny_schema, monkeypatch, caplog):
    model = make_small_model("mmoe", tiny_schema)
    legacy = export_onnx(model, tmp_path / "legacy.onnx", exporter="legacy")
    assert legacy["exporter"] == "legacy"
    assert OnnxPredictor(tmp_path / "legacy.onnx").input_names[0] == "sparse_user"
    assert (
        check_parity(model, tmp_path / "legacy.onnx", random_inputs(tiny_schema, 37))
        <= 1e-5
    )

    def broken(*args, **kwargs):
        raise RuntimeError("simulated dynamo failure")

    monkeypatch.setattr(export_module, "_export_dynamo", broken)
    with caplog.at_level(logging.INFO, logger="mtl_reco.modeling.export"):
        fallback = export_onnx(model, tmp_path / "fallback.onnx")
    assert fallback["exporter"] == "legacy"
    assert "simulated dynamo failure" in caplog.text
    assert "legacy exporter" in caplog.text
    with pytest.raises(ExportError, match="simulated dynamo failure"):
        export_onnx(model, tmp_path / "never.onnx", exporter="dynamo")


def test_predictor_rejects_foreign_onnx(tmp_path):
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None])],
    )
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "foreign.onnx"))
    with pytest.raises(ModelFileError, match="metadata"):
        OnnxPredictor(tmp_path / "foreign.onnx")


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
@pytest.mark.parametrize("name", ["mmoe", "ple"])
def test_training_kernels_are_not_exported(
    name, exporter, tmp_path, tiny_schema, monkeypatch
):
    """Export traces the plain path: the CPU training kernels never run."""
    from mtl_reco.modeling.kernels import experts, sparse_grad

    def forbidden(*args, **kwargs):
        raise AssertionError("a training kernel ran during export")

    model = make_small_model(name, tiny_schema, expert_layout="manual")
    sparse_grad.use_row_sparse_gradients(model)
    for fn in (
        experts._ReluFirstLayer,
        experts._ReluExpertLayer,
        sparse_grad._RowLookup,
    ):
        monkeypatch.setattr(fn, "apply", forbidden)
    path = tmp_path / f"{name}.onnx"
    assert export_onnx(model, path, exporter=exporter)["exporter"] == exporter
    monkeypatch.undo()
    assert check_parity(model, path, random_inputs(tiny_schema, 37)) <= 1e-5


def test_predictor_from_bytes_with_thread_setting(exported, planted_tables):
    model, path, _ = exported["mmoe"]
    from_file = OnnxPredictor(path)
    from_bytes = OnnxPredictor(path.read_bytes(), intra_op_threads=1)
    assert from_bytes.path is None
    assert from_bytes.session.get_session_options().intra_op_num_threads == 1
    table = planted_tables["valid"]
    a = from_file.predict(table.sparse.numpy(), table.dense.numpy())
    b = from_bytes.predict(table.sparse.numpy(), table.dense.numpy())
    for name in model.output_names:
        np.testing.assert_array_equal(a[name], b[name])


def _nan_row(schema: FeatureSchema, n_rows: int = 8, row: int = 3):
    sparse, dense = random_inputs(schema, n_rows, seed=5)
    dense[row, 1] = float("nan")
    return sparse, dense


@pytest.mark.parametrize("name", MODELS)
def test_parity_is_inf_when_a_row_is_nan(name, exported, tiny_schema, caplog):
    model, path, _ = exported[name]
    sparse, dense = _nan_row(tiny_schema)
    with caplog.at_level(logging.WARNING, logger="mtl_reco.modeling.export"):
        worst = check_parity(model, path, (sparse, dense))
    assert worst == float("inf")
    assert not worst <= 1e-5
    for output in model.output_names:
        assert (
            f"ONNX parity of output '{output}': 1 non-finite value(s) from PyTorch "
            "and 1 from onnxruntime over 8 row(s)"
        ) in caplog.text
    # the same rows without the NaN are at parity
    clean = dense.clone()
    clean[3, 1] = 0.0
    assert check_parity(model, path, (sparse, clean)) <= 1e-5


def _shift_onnx(monkeypatch, output: str, row: int, delta: float) -> None:
    """Make onnxruntime's ``output`` differ by ``delta`` at ``row``."""
    original = OnnxPredictor.predict

    def shifted(self, *args, **kwargs):
        got = original(self, *args, **kwargs)
        got[output] = got[output].copy()
        got[output][row] += np.float32(delta)
        return got

    monkeypatch.setattr(OnnxPredictor, "predict", shifted)


def test_parity_reports_a_real_onnx_difference(exported, tiny_schema, monkeypatch):
    model, path, _ = exported["mmoe"]
    inputs = random_inputs(tiny_schema, 8, seed=5)
    _shift_onnx(monkeypatch, "ctcvr", row=6, delta=0.47)
    assert check_parity(model, path, inputs) == pytest.approx(0.47, abs=1e-5)
    # a NaN row elsewhere no longer hides the mismatch: the check fails
    assert check_parity(model, path, _nan_row(tiny_schema)) == float("inf")


def test_parity_is_inf_when_only_onnx_is_non_finite(
    exported, tiny_schema, monkeypatch, caplog
):
    model, path, _ = exported["esmm"]
    _shift_onnx(monkeypatch, "cvr", row=2, delta=float("inf"))
    with caplog.at_level(logging.WARNING, logger="mtl_reco.modeling.export"):
        worst = check_parity(model, path, random_inputs(tiny_schema, 8, seed=5))
    assert worst == float("inf")
    assert (
        "ONNX parity of output 'cvr': 0 non-finite value(s) from PyTorch and 1 "
        "from onnxruntime over 8 row(s)"
    ) in caplog.text
    assert "output 'ctr'" not in caplog.text
