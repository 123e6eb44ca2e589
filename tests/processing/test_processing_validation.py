"""Validation rules: each problem gives a clear, countable error."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mtl_reco.processing.config import ValidationConfig
from mtl_reco.processing.validation import (
    DataValidationError,
    failure_message,
    raise_for_failures,
    render_summary,
    validate_table,
)
from mtl_reco.tables import FrameTable

from .conftest import TOY_SCHEMA, toy_frame


def run(frame: pd.DataFrame, schema=TOY_SCHEMA, **config):
    return validate_table(
        FrameTable(frame), schema, ValidationConfig(**config), inputs=["toy.csv"]
    )


def failing(report, severity="hard"):
    return [
        c for c in report["checks"] if not c["success"] and c["severity"] == severity
    ]


def test_clean_events_pass(frame):
    report = run(frame)
    assert report["success"] is True
    assert report["hard_failures"] == report["soft_failures"] == 0
    assert report["rows"] == 100
    rules = {c["rule"] for c in report["checks"]}
    assert rules == {
        "required_columns",
        "column_types",
        "row_count",
        "labels_binary",
        "labels_not_null",
        "purchase_implies_click",
        "dense_finite",
        "ids_non_negative",
    }
    assert report["suite"]["name"] == "raw_events.toy"
    raise_for_failures(report)  # no error


def test_missing_column_names_the_column(frame):
    report = run(frame.drop(columns=["purchase"]))
    assert not report["success"]
    with pytest.raises(DataValidationError) as err:
        raise_for_failures(report)
    msg = str(err.value)
    assert msg.startswith("validation failed for source 'toy' (file toy.csv): ")
    assert "expect_column_to_exist on column 'purchase': column missing" in msg


def test_label_of_two_counts_rows(frame):
    frame.loc[7, "click"] = 2
    report = run(frame)
    with pytest.raises(DataValidationError) as err:
        raise_for_failures(report)
    assert (
        "expect_column_values_to_be_in_set on column 'click': 1 of 100 rows "
        "outside {0, 1} (e.g. 2)"
    ) in str(err.value)


def test_purchase_without_click_is_soft_by_default(frame, caplog):
    noisy = frame.index[(frame["click"] == 0)][:3]
    frame.loc[noisy, "purchase"] = 1
    with caplog.at_level(logging.WARNING, logger="mtl_reco.processing.validation"):
        report = run(frame)
    assert report["success"] is True
    (check,) = failing(report, "soft")
    assert check["rule"] == "purchase_implies_click"
    assert check["unexpected_count"] == 3
    assert (
        "expect_column_pair_values_a_to_be_greater_than_b on columns 'click' and "
        "'purchase': 3 of 100 rows with purchase = 1 but click = 0"
    ) in check["message"]
    assert "3 of 100 rows with purchase = 1" in caplog.text
    raise_for_failures(report)  # soft: no error


def test_purchase_without_click_can_be_hard(frame):
    frame.loc[frame.index[frame["click"] == 0][:2], "purchase"] = 1
    report = run(frame, source_overrides={"toy": {"purchase_implies_click": "hard"}})
    with pytest.raises(DataValidationError, match="2 of 100 rows with purchase = 1"):
        raise_for_failures(report)


def test_nan_and_inf_dense_values(frame):
    frame.loc[3, "d1"] = np.nan
    frame.loc[[4, 5], "d2"] = np.inf
    report = run(frame)
    msg = failure_message(report)
    assert (
        "expect_column_values_to_not_be_null on column 'd1': 1 of 100 rows NaN or "
        "missing"
    ) in msg
    assert (
        "expect_column_values_to_be_between on column 'd2': 2 of 100 rows infinite"
        in msg
    )


def test_empty_table_fails_row_count(frame):
    report = run(frame.iloc[:0])
    with pytest.raises(DataValidationError) as err:
        raise_for_failures(report)
    assert "expect_table_row_count_to_be_between: the table has 0 rows" in str(
        err.value
    )
    assert report["rows"] == 0


def test_negative_ids_and_null_labels(frame):
    frame.loc[[1, 2], "user"] = -5
    frame["purchase"] = frame["purchase"].astype("Int8")
    frame.loc[9, "purchase"] = pd.NA
    msg = failure_message(run(frame))
    assert (
        "expect_column_values_to_be_between on column 'user': 2 of 100 rows negative"
        in msg
    )
    assert (
        "expect_column_values_to_not_be_null on column 'purchase': 1 of 100 rows "
        "with a missing label"
    ) in msg


def test_non_numeric_dense_column_is_a_dtype_failure(frame):
    frame["d1"] = frame["d1"].astype(str)
    msg = failure_message(run(frame))
    assert "expect_column_values_to_be_in_type_list on column 'd1'" in msg
    assert "is not numeric" in msg


def test_counts_are_summed_over_chunks():
    frame = toy_frame(100)
    frame.loc[[5, 55, 95], "click"] = 3
    report = run(frame, chunk_rows=30)
    assert report["chunks"] == 4
    (check,) = failing(report)
    assert check["unexpected_count"] == 3 and check["element_count"] == 100
    assert check["unexpected_examples"] == [3, 3, 3]


def test_off_rule_is_skipped_and_soft_rule_only_warns(frame):
    frame.loc[3, "d1"] = np.nan
    cfg = {"rules": {"dense_finite": "off"}}
    report = run(frame, **cfg)
    assert report["success"] and not any(
        c["rule"] == "dense_finite" for c in report["checks"]
    )
    report = run(frame, rules={"dense_finite": "soft"})
    assert report["success"] and report["soft_failures"] == 1


def test_string_ids_are_not_range_checked():
    frame = toy_frame(20)
    frame["user"] = "u" + frame["user"].astype(str)
    report = run(frame)
    assert report["success"]
    assert not any(
        c["rule"] == "ids_non_negative" and c["column"] == "user"
        for c in report["checks"]
    )


def test_no_funnel_means_no_pair_check(frame):
    schema = replace(TOY_SCHEMA, funnel=None)
    report = run(frame, schema=schema)
    assert not any(c["rule"] == "purchase_implies_click" for c in report["checks"])


def test_summary_lists_failures(frame):
    frame.loc[0, "click"] = 2
    text = render_summary(run(frame))
    assert text.startswith("# Validation of source `toy`")
    assert "**FAILED**" in text
    assert "[HARD] `labels_binary`" in text
    assert "| FAIL | hard | labels_binary |" in text


SPLIT_FILES = {"train": "/x/train.csv", "valid": "/x/valid.csv", "test": "/x/test.csv"}


def _run_splits(frame: pd.DataFrame, chunk_rows: int = 30, **config):
    frame = frame.copy()
    frame["split"] = np.where(np.arange(len(frame)) % 2, "valid", "test")
    return validate_table(
        FrameTable(frame),
        replace(TOY_SCHEMA, split_column="split"),
        ValidationConfig(chunk_rows=chunk_rows, **config),
        inputs=list(SPLIT_FILES.values()),
        input_splits=SPLIT_FILES,
    )


def test_an_input_split_without_rows_fails_row_count_naming_its_file(frame):
    report = _run_splits(frame)
    assert report["success"] is False and report["hard_failures"] == 1
    assert report["split_rows"] == {"test": 50, "valid": 50}
    assert report["input_splits"] == SPLIT_FILES
    (failed,) = failing(report)
    expected = (
        "expect_table_row_count_to_be_between: input file /x/train.csv "
        "(split 'train') has 0 rows (at least 1 required)"
    )
    assert failed["message"] == expected
    assert (failed["rule"], failed["split"], failed["file"]) == (
        "row_count",
        "train",
        "/x/train.csv",
    )
    assert failed["observed_value"] == 0
    row_counts = [c for c in report["checks"] if c["rule"] == "row_count"]
    assert [c.get("split") for c in row_counts] == [None, "train", "valid", "test"]
    assert row_counts[0]["success"] and row_counts[0]["observed_value"] == 100
    assert row_counts[2]["message"] == (
        "expect_table_row_count_to_be_between: input file /x/valid.csv "
        "(split 'valid'): passed"
    )
    with pytest.raises(DataValidationError) as err:
        raise_for_failures(report)
    assert str(err.value) == (
        "validation failed for source 'toy' (files /x/train.csv, /x/valid.csv, "
        f"/x/test.csv): {expected}"
    )
    text = render_summary(report)
    assert f"- [HARD] `row_count`: {expected}" in text
    assert (
        "| FAIL | hard | row_count | expect_table_row_count_to_be_between | "
        "split 'train' | 0 | 0 |"
    ) in text
    assert "- Rows per split: test 50, valid 50" in text


def test_split_row_count_follows_the_row_count_severity(frame, caplog):
    with caplog.at_level(logging.WARNING):
        report = _run_splits(frame, rules={"row_count": "soft"})
    assert report["success"] is True and report["soft_failures"] == 1
    assert "input file /x/train.csv (split 'train') has 0 rows" in caplog.text
    report = _run_splits(frame, rules={"row_count": "off"})
    assert report["success"] is True
    assert not any(c["rule"] == "row_count" for c in report["checks"])


def test_every_input_split_with_rows_passes(frame):
    frame = frame.copy()
    frame["split"] = np.array(["train", "valid", "test", "train"] * 25)
    report = validate_table(
        FrameTable(frame),
        replace(TOY_SCHEMA, split_column="split"),
        ValidationConfig(chunk_rows=7),
        input_splits=SPLIT_FILES,
    )
    assert report["success"] is True
    assert report["split_rows"] == {"train": 50, "valid": 25, "test": 25}
    assert sum(c["rule"] == "row_count" for c in report["checks"]) == 4
