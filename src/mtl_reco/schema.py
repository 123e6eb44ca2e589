"""Feature schema: what the encoded model-input tables contain.

The data pipeline writes it as ``feature_schema.json`` (``data/05_model_input``);
models, the trainer and the ONNX exporter read it. JSON layout
(``format_version`` 1)::

    {
      "format_version": 1,
      "sparse": [{"name": "101", "cardinality": 5001, "embedding_dim": 16}, ...],
      "dense":  [{"name": "D508"}, ...],
      "tasks":  [{"name": "ctr", "type": "classification"}, ...],
      "funnel": {"click": "ctr", "conversion": "ctcvr"},      # or null
      "extras": ["true_pctr", "true_pcvr", "true_pctcvr"]
    }

Conventions shared with the encoder:

* a sparse column holds int ids in ``[0, cardinality)``; id 0 is reserved for
  missing, rare and unseen values, so ``cardinality`` counts it;
* a dense column holds float32 values already scaled;
* each task's label column is named after the task (float32: 0/1 for
  classification, a real value for regression);
* ``extras`` are passthrough columns that are never model inputs (oracle
  propensities of simulated data, a grouping key for GAUC, ...);
* ``funnel`` names the click task and the entire-space conversion task
  (CTCVR = click x purchase) when the data is a click -> purchase funnel.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

FORMAT_VERSION = 1

TaskType = Literal["classification", "regression"]


class SchemaError(ValueError):
    """A feature schema is malformed or does not match a table."""


@dataclass(frozen=True)
class SparseFeature:
    """A categorical feature encoded as integer ids.

    Attributes:
        name: Column name in the encoded tables.
        cardinality: Number of distinct ids including the reserved id 0.
        embedding_dim: Suggested embedding size for this field.
    """

    name: str
    cardinality: int
    embedding_dim: int

    def __post_init__(self) -> None:
        if self.cardinality < 1:
            raise SchemaError(f"sparse feature {self.name!r}: cardinality must be >= 1")
        if self.embedding_dim < 1:
            raise SchemaError(
                f"sparse feature {self.name!r}: embedding_dim must be >= 1"
            )


@dataclass(frozen=True)
class DenseFeature:
    """A numeric feature (float32, already scaled)."""

    name: str


@dataclass(frozen=True)
class TaskSpec:
    """One prediction task: its name (= label column) and type."""

    name: str
    type: TaskType = "classification"

    def __post_init__(self) -> None:
        if self.type not in ("classification", "regression"):
            raise SchemaError(
                f"task {self.name!r}: type must be 'classification' or 'regression', "
                f"got {self.type!r}"
            )


@dataclass(frozen=True)
class Funnel:
    """A click -> conversion funnel expressed with task names.

    Attributes:
        click: The click task (CTR), trained on every impression.
        conversion: The entire-space conversion task (CTCVR = click x purchase).
    """

    click: str
    conversion: str


@dataclass(frozen=True)
class FeatureSchema:
    """Every input feature, every task, and the passthrough columns."""

    sparse: tuple[SparseFeature, ...]
    dense: tuple[DenseFeature, ...]
    tasks: tuple[TaskSpec, ...]
    funnel: Funnel | None = None
    extras: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [f.name for f in self.sparse] + [f.name for f in self.dense]
        names += [t.name for t in self.tasks] + list(self.extras)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"column names used twice in the feature schema: {dupes}")
        if not self.sparse and not self.dense:
            raise SchemaError("the feature schema has no input feature")
        if self.funnel is not None:
            for role, task in (
                ("click", self.funnel.click),
                ("conversion", self.funnel.conversion),
            ):
                if task not in self.task_names:
                    raise SchemaError(
                        f"funnel {role} task {task!r} is not one of the tasks "
                        f"{self.task_names}"
                    )

    @property
    def sparse_names(self) -> list[str]:
        """Sparse column names in model-input order."""
        return [f.name for f in self.sparse]

    @property
    def dense_names(self) -> list[str]:
        """Dense column names in model-input order."""
        return [f.name for f in self.dense]

    @property
    def task_names(self) -> list[str]:
        """Task names (= label column names) in order."""
        return [t.name for t in self.tasks]

    def task(self, name: str) -> TaskSpec:
        """Return the task called ``name``."""
        for spec in self.tasks:
            if spec.name == name:
                return spec
        raise SchemaError(f"unknown task {name!r}; tasks are {self.task_names}")

    def with_tasks(self, tasks: Sequence[TaskSpec | str]) -> FeatureSchema:
        """Return a copy restricted/reordered to ``tasks`` (names or specs)."""
        specs = tuple(self.task(t) if isinstance(t, str) else t for t in tasks)
        funnel = self.funnel
        if funnel is not None and not {funnel.click, funnel.conversion} <= {
            s.name for s in specs
        }:
            funnel = None
        return replace(self, tasks=specs, funnel=funnel)

    def with_embedding_dim(self, dim: int | None) -> FeatureSchema:
        """Return a copy where every sparse field uses ``dim`` (``None``: unchanged)."""
        if dim is None:
            return self
        return replace(
            self, sparse=tuple(replace(f, embedding_dim=int(dim)) for f in self.sparse)
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON representation (see the module docstring)."""
        return {
            "format_version": FORMAT_VERSION,
            "sparse": [
                {
                    "name": f.name,
                    "cardinality": f.cardinality,
                    "embedding_dim": f.embedding_dim,
                }
                for f in self.sparse
            ],
            "dense": [{"name": f.name} for f in self.dense],
            "tasks": [{"name": t.name, "type": t.type} for t in self.tasks],
            "funnel": None
            if self.funnel is None
            else {"click": self.funnel.click, "conversion": self.funnel.conversion},
            "extras": list(self.extras),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FeatureSchema:
        """Inverse of :meth:`to_dict`; raises :class:`SchemaError` when malformed."""
        version = raw.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise SchemaError(f"unsupported feature schema format_version {version}")
        try:
            funnel_raw = raw.get("funnel")
            return cls(
                sparse=tuple(
                    SparseFeature(
                        str(f["name"]), int(f["cardinality"]), int(f["embedding_dim"])
                    )
                    for f in raw.get("sparse", [])
                ),
                dense=tuple(DenseFeature(str(f["name"])) for f in raw.get("dense", [])),
                tasks=tuple(
                    TaskSpec(str(t["name"]), t.get("type", "classification"))
                    for t in raw["tasks"]
                ),
                funnel=None
                if not funnel_raw
                else Funnel(str(funnel_raw["click"]), str(funnel_raw["conversion"])),
                extras=tuple(str(e) for e in raw.get("extras", [])),
            )
        except (KeyError, TypeError) as exc:
            raise SchemaError(
                f"malformed feature schema: missing or bad field {exc}"
            ) from exc

    def to_json(self) -> str:
        """Serialise to a JSON string."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> FeatureSchema:
        """Parse a JSON string written by :meth:`to_json`."""
        return cls.from_dict(json.loads(text))
