"""Label engineering: tasks, funnel, dropped rows."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mtl_reco.processing.config import LabelsConfig
from mtl_reco.processing.labels import (
    LabelError,
    LabelPlan,
    count_labels,
    label_table,
    plan_labels,
)
from mtl_reco.schema import Funnel
from mtl_reco.tables import FrameTable

from .conftest import TOY_SCHEMA, toy_frame


def test_default_tasks_and_auto_funnel(schema):
    plan = plan_labels(schema, LabelsConfig())
    assert plan.task_names == ["ctr", "ctcvr"]
    assert plan.funnel == Funnel("ctr", "ctcvr")
    assert plan.output_columns == ["ctr", "ctcvr", "user", "item", "d1", "d2", "t"]
    again = LabelPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan


def test_ctcvr_is_click_times_purchase_and_noise_is_dropped(schema, caplog):
    frame = toy_frame(200, seed=3)
    noisy = frame.index[frame["click"] == 0][:4]
    frame.loc[noisy, "purchase"] = 1
    plan = plan_labels(schema, LabelsConfig())
    with caplog.at_level(logging.INFO, logger="mtl_reco.processing.labels"):
        report = count_labels(FrameTable(frame), plan, chunk_rows=64)
    assert report["rows_in"] == 200
    assert report["dropped"] == {"purchase_without_click": 4, "missing_label": 0}
    assert report["rows_out"] == 196
    assert "dropped 4 row(s) with purchase but no click" in caplog.text

    out = label_table(FrameTable(frame), plan).to_pandas()
    kept = frame.drop(index=noisy).reset_index(drop=True)
    assert len(out) == 196
    np.testing.assert_array_equal(out["ctr"], kept["click"].astype("float32"))
    np.testing.assert_array_equal(
        out["ctcvr"], (kept["click"] * kept["purchase"]).astype("float32")
    )
    assert (out["ctcvr"] <= out["ctr"]).all()
    assert out["ctr"].dtype == np.float32
    np.testing.assert_array_equal(out["user"], kept["user"])
    rates = {t["name"]: t["positive_rate"] for t in report["tasks"]}
    assert rates["ctr"] == pytest.approx(out["ctr"].mean())
    assert rates["ctcvr"] == pytest.approx(out["ctcvr"].mean())


def test_output_is_chunk_size_invariant(schema):
    frame = toy_frame(150, seed=1)
    frame.loc[frame.index[frame["click"] == 0][:2], "purchase"] = 1
    plan = plan_labels(schema, LabelsConfig())
    table = label_table(FrameTable(frame), plan)
    a = pd.concat(list(table.iter_chunks(chunk_rows=7)), ignore_index=True)
    b = table.to_pandas()
    pd.testing.assert_frame_equal(a, b)


def test_missing_labels_are_dropped_and_counted(schema):
    frame = toy_frame(50)
    frame["click"] = frame["click"].astype("Int8")
    frame.loc[[2, 4], "click"] = pd.NA
    plan = plan_labels(schema, LabelsConfig())
    report = count_labels(FrameTable(frame), plan, chunk_rows=1000)
    assert report["dropped"]["missing_label"] == 2
    assert len(label_table(FrameTable(frame), plan).to_pandas()) == 48


def test_explicit_tasks_expression_and_regression(schema):
    cfg = LabelsConfig.from_dict(
        {
            "tasks": [
                {"name": "click_task", "source": "click"},
                {"name": "buy", "source": "purchase"},
                {
                    "name": "score",
                    "source": "click + 2 * purchase",
                    "type": "regression",
                },
            ],
            "funnel": "auto",
        }
    )
    plan = plan_labels(schema, cfg)
    # "purchase" equals click * purchase once noise rows are gone
    assert plan.funnel == Funnel("click_task", "buy")
    frame = toy_frame(60)
    out = label_table(FrameTable(frame), plan).to_pandas()
    np.testing.assert_array_equal(out["score"], frame["click"] + 2 * frame["purchase"])
    report = count_labels(FrameTable(frame), plan, 1000)
    assert report["tasks"][2]["mean"] == pytest.approx(out["score"].mean())


def test_funnel_none_and_explicit(schema):
    assert plan_labels(schema, LabelsConfig(funnel="none")).funnel is None
    cfg = LabelsConfig.from_dict({"funnel": {"click": "ctr", "conversion": "ctcvr"}})
    assert plan_labels(schema, cfg).funnel == Funnel("ctr", "ctcvr")
    bad = LabelsConfig.from_dict({"funnel": {"click": "ctr", "conversion": "cvr"}})
    with pytest.raises(LabelError, match="task 'cvr' is not one of"):
        plan_labels(schema, bad)


def test_source_without_funnel(schema):
    plan = plan_labels(replace(schema, funnel=None), LabelsConfig())
    assert plan.funnel is None and plan.raw_funnel is None


def test_non_binary_classification_label_raises(schema):
    frame = toy_frame(30)
    frame.loc[3, "click"] = 2
    plan = plan_labels(schema, LabelsConfig())
    with pytest.raises(
        LabelError, match=r"task 'ctr' \(click\): 1 of 30 rows are not 0/1"
    ):
        count_labels(FrameTable(frame), plan, 1000)


def test_bad_expression_and_name_clash(schema):
    bad = LabelsConfig.from_dict({"tasks": [{"name": "x", "source": "clik * 2"}]})
    plan = plan_labels(schema, bad)
    with pytest.raises(LabelError, match="cannot evaluate 'clik \\* 2'"):
        count_labels(FrameTable(toy_frame(5)), plan, 100)
    clash = LabelsConfig.from_dict({"tasks": [{"name": "d1", "source": "click"}]})
    with pytest.raises(LabelError, match="clash with feature"):
        plan_labels(schema, clash)


def test_no_default_task_asks_for_params():
    with pytest.raises(LabelError, match=r"set `labels\.tasks`"):
        plan_labels(replace(TOY_SCHEMA, default_tasks=()), LabelsConfig())


def test_split_column_is_kept(schema):
    frame = toy_frame(20)
    frame["split"] = ["train"] * 10 + ["test"] * 10
    plan = plan_labels(replace(schema, split_column="split"), LabelsConfig())
    out = label_table(FrameTable(frame), plan).to_pandas()
    assert list(out.columns)[-1] == "split"
    assert out["split"].tolist() == frame["split"].tolist()
