"""The raw-events contract shared by every source.

A source turns some external format (or the simulator) into *raw events*: a
chunked table (see :mod:`mtl_reco.tables`) whose columns are

* raw label columns, 0/1 as found in the data (never cleaned here: the
  validation stage judges them), e.g. ``click``, ``purchase``;
* sparse feature columns (int64 ids or strings, as found);
* dense feature columns (float);
* optional ``split`` (``train``/``valid``/``test``) when the source ships its
  own splits, and optional passthrough *extras* (the simulator's true
  ``true_pctr``/``true_pcvr``/``true_pctcvr``, a time column, ...).

and a :class:`RawSchema` that names them, says which label columns form a
click -> purchase funnel, and proposes default tasks. Sources never import
Kedro; they are selected by name through :mod:`mtl_reco.sources.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SPLIT_COLUMN = "split"
SPLITS = ("train", "valid", "test")


class SourceError(ValueError):
    """A raw input cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class TaskDefinition:
    """How a task's label is made from raw label columns.

    Attributes:
        name: Task name (becomes the label column of the encoded tables).
        type: ``classification`` or ``regression``.
        source: A raw column name or a pandas ``eval`` expression over raw
            columns, e.g. ``click * purchase``.
    """

    name: str
    source: str
    type: str = "classification"


def event_columns(
    labels: Sequence[str],
    sparse: Sequence[str],
    dense: Sequence[str],
    extras: Sequence[str],
    split_column: str | None,
) -> list[str]:
    """Column order of event tables: labels, sparse, dense, extras, split."""
    cols = [*labels, *sparse, *dense, *extras]
    if split_column:
        cols.append(split_column)
    return cols


@dataclass(frozen=True)
class RawSchema:
    """Names and roles of the raw-event columns produced by a source.

    Attributes:
        source: Source name (``simulated``, ``census_income``, ...).
        labels: Raw label columns (expected 0/1).
        sparse: Categorical feature columns.
        dense: Numeric feature columns.
        extras: Passthrough columns that are never features.
        split_column: ``"split"`` when the source provides its own split.
        funnel: ``(click_column, purchase_column)`` when labels form a
            click -> purchase funnel (purchase must imply click).
        default_tasks: Tasks to engineer when parameters name none.
        time_column: A column usable for a time-based split, if any.
    """

    source: str
    labels: tuple[str, ...]
    sparse: tuple[str, ...]
    dense: tuple[str, ...]
    extras: tuple[str, ...] = ()
    split_column: str | None = None
    funnel: tuple[str, str] | None = None
    default_tasks: tuple[TaskDefinition, ...] = field(default_factory=tuple)
    time_column: str | None = None

    @property
    def columns(self) -> list[str]:
        """Every column the raw events must contain, in order."""
        return event_columns(
            self.labels, self.sparse, self.dense, self.extras, self.split_column
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON representation (the ``raw_schema`` artefact)."""
        return {
            "source": self.source,
            "labels": list(self.labels),
            "sparse": list(self.sparse),
            "dense": list(self.dense),
            "extras": list(self.extras),
            "split_column": self.split_column,
            "funnel": list(self.funnel) if self.funnel else None,
            "default_tasks": [
                {"name": t.name, "source": t.source, "type": t.type}
                for t in self.default_tasks
            ],
            "time_column": self.time_column,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RawSchema:
        """Inverse of :meth:`to_dict`."""
        funnel = raw.get("funnel")
        return cls(
            source=str(raw["source"]),
            labels=tuple(raw["labels"]),
            sparse=tuple(raw["sparse"]),
            dense=tuple(raw["dense"]),
            extras=tuple(raw.get("extras", ())),
            split_column=raw.get("split_column"),
            funnel=(str(funnel[0]), str(funnel[1])) if funnel else None,
            default_tasks=tuple(
                TaskDefinition(
                    str(t["name"]),
                    str(t["source"]),
                    str(t.get("type", "classification")),
                )
                for t in raw.get("default_tasks", ())
            ),
            time_column=raw.get("time_column"),
        )
