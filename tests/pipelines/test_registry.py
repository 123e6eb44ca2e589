"""Structure of the registered pipelines (no data, no run).

The experiments are the parameter blocks with ``model`` and ``weighting``;
outside a session the registry reads them from the project's configuration.
"""

from __future__ import annotations

import pytest
import yaml
from kedro.framework.project import configure_project

from mtl_reco import preflight
from mtl_reco.experiment import experiment_names, project_parameters
from mtl_reco.experiment import pipeline as template
from mtl_reco.pipeline_registry import register_pipelines

from .conftest import PROJECT_ROOT

SHARED = {"encoded_train", "encoded_valid", "encoded_test", "feature_schema"}
EXPERIMENTS = experiment_names(project_parameters(PROJECT_ROOT))


@pytest.fixture(scope="module")
def pipelines():
    configure_project("mtl_reco")
    preflight.forget_parameters()  # no session: the project's configuration
    return register_pipelines()


def test_registered_names(pipelines):
    expected = {"__default__", "data_processing", "compare", "score", "prune"}
    expected |= {f"train_{exp}" for exp in EXPERIMENTS}
    assert set(pipelines) == expected


def test_every_experiment_block_of_the_base_parameters_is_an_experiment(pipelines):
    """Read with plain YAML: every block with model + weighting, nothing else."""
    blocks = {}
    for path in sorted((PROJECT_ROOT / "conf" / "base").glob("parameters*.yml")):
        blocks.update(yaml.safe_load(path.read_text()) or {})
    experiments = [
        name
        for name, block in blocks.items()
        if isinstance(block, dict) and {"model", "weighting"} <= set(block)
    ]
    assert experiments, "conf/base defines the default experiments"
    assert set(experiments) <= set(EXPERIMENTS)
    for name in ("trainer", "evaluation", "export", "score", "sources", "runs"):
        assert f"train_{name}" not in pipelines


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


def test_an_experiment_is_one_parameter_block():
    """A block added to the session's parameters is a pipeline; nothing else changes."""
    configure_project("mtl_reco")
    params = project_parameters(PROJECT_ROOT)
    params["mmoe_gradnorm"] = {
        "model": {"name": "mmoe", "params": {"n_experts": 2}},
        "weighting": {"name": "gradnorm"},
    }
    try:
        preflight.remember_parameters(params)
        pipes = register_pipelines()
    finally:
        preflight.forget_parameters()
    assert "train_mmoe_gradnorm" in pipes
    nodes = [
        n for n in pipes["train_mmoe_gradnorm"].nodes if n.namespace == "mmoe_gradnorm"
    ]
    assert len(nodes) == 3
    assert any("params:mmoe_gradnorm.weighting" in n.inputs for n in nodes)
    (compare,) = pipes["compare"].nodes
    assert "mmoe_gradnorm.test_metrics" in compare.inputs
    default = {n.namespace for n in pipes["__default__"].nodes if n.namespace}
    assert "mmoe_gradnorm" in default
    # without the block the pipelines are the project's again
    assert "train_mmoe_gradnorm" not in register_pipelines()


def test_a_half_experiment_block_is_reported():
    configure_project("mtl_reco")
    params = {**project_parameters(PROJECT_ROOT), "mmoe_x": {"model": {"name": "mmoe"}}}
    pipes = register_pipelines()
    with pytest.raises(preflight.PreflightError) as err:
        preflight.check_run(params, pipes["compare"], None, pipes)
    assert str(err.value) == (
        "parameter block 'mmoe_x' has 'model' but no 'weighting': an experiment "
        "block needs both model and weighting"
    )


def _blocks_read(pipeline) -> set[str]:
    return {
        i.removeprefix("params:").split(".")[0]
        for n in pipeline.nodes
        for i in n.inputs
        if i.startswith("params:")
    }


@pytest.mark.parametrize(
    "env", ["base", "test", "census_income", "ali_ccp", "aliexpress"]
)
def test_one_parameter_file_per_pipeline(pipelines, env):
    """parameters_<pipeline>.yml holds what that pipeline reads; parameters.yml
    what several pipelines (or the run guard) share."""
    data = pipelines["data_processing"]
    training = (
        sum(
            (p for name, p in pipelines.items() if name.startswith("train_")),
            type(data)([]),
        )
        - data
    )
    read_by = {
        "data_processing": _blocks_read(data),
        "training": _blocks_read(training),
        "score": _blocks_read(pipelines["score"]),
        "compare": _blocks_read(pipelines["compare"]),
    }
    shared = {"dataset", "runs"}
    files = sorted((PROJECT_ROOT / "conf" / env).glob("parameters*.yml"))
    assert files
    for path in files:
        blocks = set(yaml.safe_load(path.read_text()) or {})
        pipeline = path.stem.removeprefix("parameters").removeprefix("_")
        if not pipeline:
            assert blocks <= shared, path
            continue
        assert pipeline in read_by, f"{path.name}: no pipeline called {pipeline}"
        assert blocks <= read_by[pipeline] - shared, (path, blocks - read_by[pipeline])
