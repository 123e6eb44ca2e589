"""Structure of the registered pipelines (no data, no run)."""

from __future__ import annotations

import pytest
from kedro.framework.project import configure_project

from mtl_reco.experiment import EXPERIMENTS
from mtl_reco.experiment import pipeline as template
from mtl_reco.pipeline_registry import register_pipelines

SHARED = {"encoded_train", "encoded_valid", "encoded_test", "feature_schema"}


@pytest.fixture(scope="module")
def pipelines():
    configure_project("mtl_reco")
    return register_pipelines()


def test_registered_names(pipelines):
    expected = {"__default__", "data_processing", "compare", "score", "prune"}
    expected |= {f"train_{exp}" for exp in EXPERIMENTS}
    assert set(pipelines) == expected
    assert set(EXPERIMENTS) == {"shared_bottom", "esmm", "mmoe", "ple", "aitm"}


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_train_pipeline_is_data_processing_plus_one_namespaced_template(pipelines, exp):
    train = pipelines[f"train_{exp}"]
    data = pipelines["data_processing"]
    experiment_nodes = [n for n in train.nodes if n.namespace == exp]
    other = [n for n in train.nodes if n.namespace != exp]
    assert {n.name for n in other} == {n.name for n in data.nodes}
    by_tag = {
        tag: [n for n in experiment_nodes if tag in n.tags]
        for tag in (template.TRAIN_TAG, template.EVALUATE_TAG, template.EXPORT_TAG)
    }
    assert {tag: len(nodes) for tag, nodes in by_tag.items()} == {
        "training": 1,
        "evaluation": 1,
        "export": 1,
    }
    assert len(experiment_nodes) == 3
    (train_node,) = by_tag["training"]
    # shared data-processing outputs, namespaced parameters and artefacts
    assert SHARED - {"encoded_test"} <= set(train_node.inputs)
    assert f"params:{exp}.model" in train_node.inputs
    assert f"params:{exp}.weighting" in train_node.inputs
    assert "params:trainer" in train_node.inputs
    assert set(train_node.outputs) == {
        f"{exp}.model_state",
        f"{exp}.model_spec",
        f"{exp}.training_history",
    }
    (export_node,) = by_tag["export"]
    assert set(export_node.outputs) == {f"{exp}.onnx_model", f"{exp}.onnx_parity"}
    # every free input of the experiment part comes from data processing or params
    free = {i for n in experiment_nodes for i in n.inputs} - {
        o for n in experiment_nodes for o in n.outputs
    }
    assert {i for i in free if not i.startswith("params:")} <= set(data.all_outputs())


def test_default_runs_everything_and_compare_reads_every_experiment(pipelines):
    default = pipelines["__default__"]
    namespaces = {n.namespace for n in default.nodes if n.namespace}
    assert namespaces == set(EXPERIMENTS) | {"data_processing"}
    (compare,) = pipelines["compare"].nodes
    assert set(compare.inputs) == {f"{exp}.test_metrics" for exp in EXPERIMENTS} | {
        "params:dataset"
    }
    assert compare.name in {n.name for n in default.nodes}


def test_adding_an_experiment_is_one_list_entry(monkeypatch):
    import mtl_reco.pipeline_registry as registry

    monkeypatch.setattr(registry, "EXPERIMENTS", (*EXPERIMENTS, "mmoe_gradnorm"))
    configure_project("mtl_reco")
    pipes = registry.register_pipelines()
    assert "train_mmoe_gradnorm" in pipes
    nodes = [
        n for n in pipes["train_mmoe_gradnorm"].nodes if n.namespace == "mmoe_gradnorm"
    ]
    assert len(nodes) == 3
    assert any("params:mmoe_gradnorm.weighting" in n.inputs for n in nodes)
