"""Label engineering: raw label columns -> one float32 label column per task.

A task's label is a raw label column (``click``) or a pandas ``eval``
expression over the raw label columns only (``click * purchase`` gives the
entire-space CTCVR label). Two kinds of rows are dropped, and both are
counted in the label report and logged, never silently:

* *funnel noise*: in a click -> purchase source, rows with ``purchase = 1``
  and ``click = 0`` (the validation rule ``purchase_implies_click`` counts
  them; by default it only warns so that this stage can drop them);
* rows where any task label is missing.

Classification labels must then be 0/1 (anything else raises
:class:`LabelError`: a soft ``labels_binary`` validation rule does not make a
label of 2 trainable).

The output keeps, in order: task labels, sparse features, dense features,
extras and the source's split column. The :class:`LabelPlan` (the
``task_spec`` artefact) records the tasks, the funnel as task names, and the
column roles that the split and encoding stages read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mtl_reco.processing._chunks import non_empty
from mtl_reco.processing.config import FunnelConfig, LabelsConfig, TaskConfig
from mtl_reco.schema import Funnel, TaskSpec
from mtl_reco.sources.base import RawSchema, event_columns
from mtl_reco.tables import StreamTable, Table

logger = logging.getLogger(__name__)


class LabelError(ValueError):
    """Tasks cannot be built from the raw labels; the message says why."""


@dataclass(frozen=True)
class LabelPlan:
    """What the labels stage produces (serialised as the ``task_spec`` artefact).

    Attributes:
        source: Source name.
        tasks: Tasks (name, raw column or expression, type).
        funnel: Click task and entire-space conversion task, by task name.
        raw_labels: Raw label columns the tasks are computed from.
        raw_funnel: ``(click, purchase)`` raw columns used to drop noise rows.
        sparse: Sparse feature columns.
        dense: Dense feature columns.
        extras: Passthrough columns.
        split_column: The source's split column, if any.
        time_column: The source's time column, if any.
    """

    source: str
    tasks: tuple[TaskConfig, ...]
    funnel: Funnel | None
    raw_labels: tuple[str, ...]
    raw_funnel: tuple[str, str] | None
    sparse: tuple[str, ...]
    dense: tuple[str, ...]
    extras: tuple[str, ...]
    split_column: str | None = None
    time_column: str | None = None

    @property
    def task_names(self) -> list[str]:
        """Task names = label columns of the output."""
        return [t.name for t in self.tasks]

    @property
    def task_specs(self) -> list[TaskSpec]:
        """Tasks as feature-schema task specs."""
        return [TaskSpec(t.name, t.type) for t in self.tasks]

    @property
    def output_columns(self) -> list[str]:
        """Columns of the labelled events, in order."""
        return event_columns(
            self.task_names, self.sparse, self.dense, self.extras, self.split_column
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the ``task_spec`` artefact)."""
        return {
            "source": self.source,
            "tasks": [
                {"name": t.name, "source": t.source, "type": t.type} for t in self.tasks
            ],
            "funnel": None
            if self.funnel is None
            else {"click": self.funnel.click, "conversion": self.funnel.conversion},
            "raw_labels": list(self.raw_labels),
            "raw_funnel": list(self.raw_funnel) if self.raw_funnel else None,
            "sparse": list(self.sparse),
            "dense": list(self.dense),
            "extras": list(self.extras),
            "split_column": self.split_column,
            "time_column": self.time_column,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LabelPlan:
        """Inverse of :meth:`to_dict`."""
        funnel = raw.get("funnel")
        raw_funnel = raw.get("raw_funnel")
        return cls(
            source=str(raw["source"]),
            tasks=tuple(TaskConfig.from_dict(t) for t in raw["tasks"]),
            funnel=Funnel(funnel["click"], funnel["conversion"]) if funnel else None,
            raw_labels=tuple(raw["raw_labels"]),
            raw_funnel=(raw_funnel[0], raw_funnel[1]) if raw_funnel else None,
            sparse=tuple(raw["sparse"]),
            dense=tuple(raw["dense"]),
            extras=tuple(raw.get("extras", ())),
            split_column=raw.get("split_column"),
            time_column=raw.get("time_column"),
        )


def plan_labels(schema: RawSchema, config: LabelsConfig) -> LabelPlan:
    """Decide the tasks and the funnel for ``schema``.

    Raises:
        LabelError: No task, a task name clashing with a feature column, or
            an explicit funnel naming unknown tasks.
    """
    if config.tasks is not None:
        tasks = tuple(config.tasks)
    else:
        tasks = tuple(
            TaskConfig(name=t.name, source=t.source, type=t.type)  # type: ignore[arg-type]
            for t in schema.default_tasks
        )
    if not tasks:
        raise LabelError(
            f"source '{schema.source}' declares no default task; "
            "set `labels.tasks` in the parameters"
        )
    others = {*schema.sparse, *schema.dense, *schema.extras}
    if schema.split_column:
        others.add(schema.split_column)
    clash = sorted(t.name for t in tasks if t.name in others)
    if clash:
        raise LabelError(
            f"task name(s) {clash} clash with feature/extra columns of source "
            f"'{schema.source}'; rename the task(s)"
        )
    return LabelPlan(
        source=schema.source,
        tasks=tasks,
        funnel=_funnel(schema, tasks, config.funnel),
        raw_labels=schema.labels,
        raw_funnel=schema.funnel,
        sparse=schema.sparse,
        dense=schema.dense,
        extras=schema.extras,
        split_column=schema.split_column,
        time_column=schema.time_column,
    )


def _funnel(
    schema: RawSchema, tasks: Sequence[TaskConfig], wanted: str | FunnelConfig
) -> Funnel | None:
    names = [t.name for t in tasks]
    if isinstance(wanted, FunnelConfig):
        for role, name in (("click", wanted.click), ("conversion", wanted.conversion)):
            if name not in names:
                raise LabelError(
                    f"labels.funnel.{role}: task '{name}' is not one of {names}"
                )
        return Funnel(wanted.click, wanted.conversion)
    if wanted == "none" or schema.funnel is None:
        return None
    click, purchase = schema.funnel
    ctcvr_forms = {f"{click}*{purchase}", f"{purchase}*{click}", purchase}
    click_task = next((t.name for t in tasks if _norm(t.source) == click), None)
    conversion_task = next(
        (t.name for t in tasks if _norm(t.source) in ctcvr_forms), None
    )
    if click_task is None or conversion_task is None:
        logger.info(
            "labels: no funnel (no task equals '%s' and '%s * %s')",
            click,
            click,
            purchase,
        )
        return None
    return Funnel(click_task, conversion_task)


def _norm(expression: str) -> str:
    return "".join(expression.split())


def _evaluate(task: TaskConfig, raw: pd.DataFrame) -> pd.Series:
    """Raw label values of one task for one chunk (float64, NaN = missing)."""
    if task.source in raw.columns:
        values = raw[task.source]
    else:
        try:
            values = raw.eval(task.source)
        except Exception as exc:
            raise LabelError(
                f"task '{task.name}': cannot evaluate {task.source!r} over the raw "
                f"label columns {list(raw.columns)}: {exc}"
            ) from exc
    if not isinstance(values, pd.Series):
        values = pd.Series(values, index=raw.index)
    return pd.to_numeric(values, errors="coerce").astype("float64")


@dataclass
class _Counts:
    rows_in: int = 0
    noise: int = 0
    null_label: int = 0


def _label_chunk(
    chunk: pd.DataFrame, plan: LabelPlan, counts: _Counts | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Return (task labels, rows-to-keep mask) for one chunk; update counts."""
    missing = [c for c in plan.raw_labels if c not in chunk.columns]
    if missing:
        raise LabelError(
            f"raw label column(s) {missing} missing from the raw events of source "
            f"'{plan.source}'"
        )
    raw = chunk[list(plan.raw_labels)]
    keep = np.ones(len(chunk), dtype=bool)
    noise = 0
    if plan.raw_funnel is not None:
        click, purchase = plan.raw_funnel
        p = pd.to_numeric(raw[purchase], errors="coerce").to_numpy(
            "float64", na_value=np.nan
        )
        c = pd.to_numeric(raw[click], errors="coerce").to_numpy(
            "float64", na_value=np.nan
        )
        noisy = (p == 1) & (c == 0)
        noise = int(noisy.sum())
        keep &= ~noisy
    labels = pd.DataFrame(
        {t.name: _evaluate(t, raw) for t in plan.tasks}, index=chunk.index
    )
    nulls = labels.isna().any(axis=1).to_numpy() & keep
    keep &= ~nulls
    for task in plan.tasks:
        if task.type != "classification":
            continue
        values = labels[task.name].to_numpy()[keep]
        bad = (values != 0) & (values != 1)
        if bad.any():
            examples = sorted({float(v) for v in values[bad][:100]})[:3]
            raise LabelError(
                f"task '{task.name}' ({task.source}): {int(bad.sum())} of "
                f"{int(keep.sum())} rows are not 0/1 (e.g. {examples}); a "
                "classification label must be binary (see the validation report)"
            )
    if counts is not None:
        counts.rows_in += len(chunk)
        counts.noise += noise
        counts.null_label += int(nulls.sum())
    return labels, keep


def label_chunk(chunk: pd.DataFrame, plan: LabelPlan) -> pd.DataFrame:
    """Labelled rows of one raw chunk (noise and missing-label rows dropped)."""
    passthrough = plan.output_columns[len(plan.tasks) :]
    missing = [c for c in passthrough if c not in chunk.columns]
    if missing:
        raise LabelError(
            f"column(s) {missing} missing from the raw events of source '{plan.source}'"
        )
    labels, keep = _label_chunk(chunk, plan)
    out = {t: labels[t].to_numpy("float32")[keep] for t in plan.task_names}
    kept = chunk[passthrough].iloc[np.flatnonzero(keep)].reset_index(drop=True)
    return pd.concat([pd.DataFrame(out), kept], axis=1)


def count_labels(table: Table, plan: LabelPlan, chunk_rows: int) -> dict[str, Any]:
    """One pass over the raw label columns: drop counts and label statistics.

    Returns:
        The label report: rows in/out, rows dropped per reason, and per task
        the number of rows, the positive count and rate (classification) or
        the mean (regression) over the kept rows.
    """
    counts = _Counts()
    sums = dict.fromkeys(plan.task_names, 0.0)
    kept = 0
    for chunk in table.iter_chunks(
        columns=list(plan.raw_labels), chunk_rows=chunk_rows
    ):
        labels, keep = _label_chunk(chunk, plan, counts)
        kept += int(keep.sum())
        for name in plan.task_names:
            sums[name] += float(labels[name].to_numpy()[keep].sum())
    tasks = []
    for task in plan.tasks:
        entry: dict[str, Any] = {
            "name": task.name,
            "source": task.source,
            "type": task.type,
            "rows": kept,
        }
        if task.type == "classification":
            entry["positives"] = round(sums[task.name])
            entry["positive_rate"] = sums[task.name] / kept if kept else None
        else:
            entry["mean"] = sums[task.name] / kept if kept else None
        tasks.append(entry)
    report = {
        "source": plan.source,
        "rows_in": counts.rows_in,
        "rows_out": kept,
        "dropped": {
            "purchase_without_click": counts.noise,
            "missing_label": counts.null_label,
        },
        "raw_funnel": list(plan.raw_funnel) if plan.raw_funnel else None,
        "funnel": None
        if plan.funnel is None
        else {"click": plan.funnel.click, "conversion": plan.funnel.conversion},
        "tasks": tasks,
    }
    logger.info(
        "labels for source '%s': %d of %d rows kept; dropped %d with purchase but "
        "no click (funnel noise) and %d with a missing label; tasks %s",
        plan.source,
        kept,
        counts.rows_in,
        counts.noise,
        counts.null_label,
        ", ".join(
            f"{t['name']}={t.get('positive_rate', t.get('mean'))}" for t in tasks
        ),
    )
    if counts.noise:
        logger.warning(
            "labels for source '%s': dropped %d row(s) with purchase but no click",
            plan.source,
            counts.noise,
        )
    return report


def label_table(table: Table, plan: LabelPlan) -> StreamTable:
    """Lazily labelled events (computed chunk by chunk while being written)."""

    def produce(chunk_rows: int) -> Iterator[pd.DataFrame]:
        return non_empty(
            label_chunk(chunk, plan)
            for chunk in table.iter_chunks(chunk_rows=chunk_rows)
        )

    return StreamTable(produce, plan.output_columns)
