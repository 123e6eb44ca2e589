"""Split nodes."""

from __future__ import annotations

from typing import Any

from mtl_reco.processing.config import SplitConfig
from mtl_reco.processing.split import plan_split, split_report, split_table
from mtl_reco.tables import Table


def split_events(
    labelled_events: Table, task_spec: dict[str, Any], split: SplitConfig
) -> tuple[Table, Table, Table, dict[str, Any]]:
    """Assign every labelled row to train, valid or test.

    Args:
        labelled_events: Output of the labels stage.
        task_spec: Column roles (the source's split and time columns).
        split: Method (source split, time column or seeded random), ratios.

    Returns:
        Lazy train, valid and test tables and the split plan.
    """
    plan = plan_split(
        labelled_events,
        split,
        split_column=task_spec.get("split_column"),
        time_column=task_spec.get("time_column"),
    )
    tables = split_table(labelled_events, plan)
    return tables["train"], tables["valid"], tables["test"], plan.to_dict()


def report_split(
    train_events: Table,
    valid_events: Table,
    test_events: Table,
    task_spec: dict[str, Any],
    split_plan: dict[str, Any],
) -> dict[str, Any]:
    """Rows, shares and label rates of the written splits."""
    return split_report(
        {"train": train_events, "valid": valid_events, "test": test_events},
        task_spec["tasks"],
        split_plan,
    )
