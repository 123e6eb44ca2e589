"""A model and a loss weighting added through the registries alone get tested.

``throwaway_plugin.py`` defines a model and a strategy and registers them with
``register_model``/``register_strategy``; no test, configuration or list names
them. Run with that plugin, the modeling suites must run every
registry-parametrised test for both names, and those tests must pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from mtl_reco.modeling.models.registry import available_models, get_model_class
from mtl_reco.modeling.weighting.registry import available_strategies

from .throwaway_plugin import MODEL_NAME, STRATEGY_NAME

PROJECT_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # one pytest subprocess, about 30 s


def _run_suites(tmp_path: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    report = tmp_path / "report.xml"
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.modeling.throwaway_plugin",
            "-p",
            "no:cacheprovider",
            "tests/modeling",
            "-k",
            f"{MODEL_NAME} or {STRATEGY_NAME}",
            "--junitxml",
            str(report),
            "-rA",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    cases = []
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = next(
            (c.tag for c in case if c.tag in ("failure", "error", "skipped")),
            "passed",
        )
        module = case.get("classname", "").rpartition(".")[2]
        name = case.get("name", "")
        cases.append({"test": f"{module}::{name}", "outcome": outcome})
    return proc, cases


def test_suites_pick_up_a_model_and_a_strategy_added_through_the_registries(
    tmp_path,
):
    proc, cases = _run_suites(tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert f"model '{MODEL_NAME}', loss weighting '{STRATEGY_NAME}'" in output
    assert cases and all(c["outcome"] == "passed" for c in cases), [
        c for c in cases if c["outcome"] != "passed"
    ]
    runs = Counter(c["test"].partition("[")[0] for c in cases)

    def ran(test: str, name: str) -> int:
        return sum(
            1
            for c in cases
            if c["test"].startswith(f"{test}[") and name in c["test"].partition("[")[2]
        )

    # the matrix: the new model with every strategy (new one included), the
    # new strategy with every model; again with a regression task
    models = [*available_models(), MODEL_NAME]
    strategies = [*available_strategies(), STRATEGY_NAME]
    regression = [
        m for m in available_models() if get_model_class(m).supports_regression
    ]
    matrix = "test_matrix::test_model_x_strategy_trains"
    assert ran(matrix, MODEL_NAME) == len(strategies)
    assert ran(matrix, STRATEGY_NAME) == len(models)
    matrix_regression = "test_matrix::test_model_x_strategy_with_a_regression_task"
    assert ran(matrix_regression, MODEL_NAME) == len(strategies)
    assert ran(matrix_regression, STRATEGY_NAME) == len(regression) + 1
    # every registry-parametrised suite of one model or one strategy
    for test in (
        "test_contract::test_registry_name_class_and_config",
        "test_contract::test_outputs_keys_shapes_and_ranges",
        "test_contract::test_every_loss_head_reaches_every_shared_parameter",
        "test_contract::test_last_shared_layer_is_shared_and_not_an_embedding",
        "test_contract::test_parameter_roles_are_disjoint_and_complete",
        "test_contract::test_task_parameters_get_gradient_only_from_their_task",
        "test_contract::test_seeded_training_is_deterministic",
        "test_contract::test_final_batch_of_one_row_trains",
        "test_contract::test_spec_rebuilds_the_same_model",
        "test_contract::test_wrong_config_type_and_single_task_rejected",
        "test_contract::test_three_tasks",
        "test_contract::test_regression_task_outputs_raw_values",
        "test_export::test_parity_at_batch_1_and_37",
        "test_export::test_export_file_io_and_mode",
        "test_export::test_parity_is_inf_when_a_row_is_nan",
        "test_learning::test_model_learns_planted_signal",
        "test_learning::test_regression_task_learns",
    ):
        assert ran(test, MODEL_NAME) == 1, (test, sorted(runs))
    for test in (
        "test_state::test_registry_name_class_and_config",
        "test_state::test_state_dict_round_trip",
        "test_state::test_missing_loss_is_a_clear_error",
    ):
        assert ran(test, STRATEGY_NAME) == 1, (test, sorted(runs))
    assert ran(
        "test_sparse_grad::test_sparse_equals_dense_for_plain_sgd", STRATEGY_NAME
    )
    # only the new names ran: the existing ones are the main suite's job
    assert all(MODEL_NAME in c["test"] or STRATEGY_NAME in c["test"] for c in cases)
