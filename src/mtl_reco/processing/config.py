"""Typed parameters of the data-processing stages (no framework import).

Each ``parameters_data_processing.yml`` block becomes one of these strict,
frozen pydantic models (Kedro validates them from the YAML before any node
runs, so a misspelt key fails early with a "did you mean" suggestion)::

    sources:    {simulated: {n_rows: ...}, census_income: {path: ...}, ...}
    validation: {rules: {labels_binary: hard, purchase_implies_click: soft, ...}}
    labels:     {tasks: null, funnel: auto}
    split:      {use_source_split: true, time_column: null, ratios: {...}, seed: 17}
    encoding:   {min_count: 2, dense_scaling: standard, embedding: {...}, ...}

The dataset itself is chosen by the top-level ``dataset`` parameter.
"""

from __future__ import annotations

import difflib
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import Field, create_model, field_validator, model_validator

from mtl_reco.sources.registry import available_sources, options_class
from mtl_reco.typed_config import ConfigError, StrictConfig

DEFAULT_CHUNK_ROWS = 500_000

Severity = Literal["hard", "soft", "off"]
"""``hard`` stops the run, ``soft`` only warns, ``off`` skips the rule."""

TaskType = Literal["classification", "regression"]
Scaling = Literal["standard", "minmax", "log1p", "none"]
ChunkRows = Annotated[int, Field(ge=1)]
"""Rows per chunk of a pass (>= 1)."""


class _SourcesBase(StrictConfig):
    """Base of the generated :data:`SourcesConfig`."""

    def for_source(self, name: str) -> StrictConfig:
        """The options of source ``name`` (its defaults when no block is given)."""
        cls = options_class(name)  # unknown source -> SourceError naming the choices
        value = getattr(self, name, None)
        return cls() if value is None else value


def _make_sources_config() -> type[_SourcesBase]:
    """One optional block per registered source, typed by its options class."""
    fields: dict[str, Any] = {
        name: (options_class(name) | None, None) for name in available_sources()
    }
    cls = create_model(
        "SourcesConfig",
        __base__=_SourcesBase,
        __module__=__name__,
        __doc__=(
            "Per-source options, one optional block per registered source.\n\n"
            "Each block becomes an instance of that source's options class\n"
            "(strict: unknown keys fail with a suggestion); a missing block\n"
            "means the source's defaults."
        ),
        **fields,
    )
    return cls


if TYPE_CHECKING:

    class SourcesConfig(_SourcesBase):
        """Static view of the generated class (for type checkers)."""

        def __init__(self, **blocks: Any) -> None: ...

else:
    SourcesConfig = _make_sources_config()
    """``sources`` parameter block: ``SourcesConfig(simulated={...}, ...)``.

    Built from :func:`mtl_reco.sources.registry.available_sources`, so a
    source registered later gets its block without touching this module.
    """


class RuleSeverities(StrictConfig):
    """Severity of each validation rule (see :mod:`mtl_reco.processing.validation`).

    Attributes:
        required_columns: Every column of the raw schema is present.
        column_types: Label and dense columns are numeric.
        row_count: The table has at least one row.
        labels_binary: Raw label values are in {0, 1}.
        labels_not_null: Raw labels are never missing.
        purchase_implies_click: In a click -> purchase funnel no purchase
            happens without a click (soft by default: such rows are counted
            here and dropped, with their count reported, by the labels stage).
        dense_finite: Dense values are neither NaN nor infinite.
        ids_non_negative: Integer sparse ids are >= 0.
    """

    required_columns: Severity = "hard"
    column_types: Severity = "hard"
    row_count: Severity = "hard"
    labels_binary: Severity = "hard"
    labels_not_null: Severity = "hard"
    purchase_implies_click: Severity = "soft"
    dense_finite: Severity = "hard"
    ids_non_negative: Severity = "hard"


class ValidationConfig(StrictConfig):
    """``validation`` parameter block.

    Attributes:
        rules: Default severity of each rule.
        source_overrides: Per-source severities that replace the defaults,
            e.g. ``{census_income: {dense_finite: soft}}``.
        chunk_rows: Rows validated per Great Expectations batch.
        examples: Unexpected values kept per check in the report.
    """

    rules: RuleSeverities = Field(default_factory=RuleSeverities)
    source_overrides: dict[str, dict[str, Severity]] = Field(default_factory=dict)
    chunk_rows: ChunkRows = DEFAULT_CHUNK_ROWS
    examples: int = Field(default=5, ge=0)

    @field_validator("source_overrides", mode="after")
    @classmethod
    def _known_rules(
        cls, overrides: dict[str, dict[str, Severity]]
    ) -> dict[str, dict[str, Severity]]:
        """Reject unknown rule names in the overrides."""
        known = list(RuleSeverities.model_fields)
        for source, block in overrides.items():
            for rule in block:
                if rule not in known:
                    close = difflib.get_close_matches(rule, known, n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise ConfigError(
                        f"source {source!r}: unknown rule '{rule}'{hint}. "
                        f"Known rules: {', '.join(known)}"
                    )
        return overrides

    def severities(self, source: str) -> RuleSeverities:
        """Rule severities for ``source`` (defaults plus its overrides)."""
        override = self.source_overrides.get(source) or {}
        return self.rules.replace(**override)


class TaskConfig(StrictConfig):
    """One task of the ``labels.tasks`` list.

    Attributes:
        name: Task name; becomes the label column of the encoded tables.
        source: A raw label column or a pandas ``eval`` expression over raw
            label columns, e.g. ``click * purchase``.
        type: ``classification`` (labels must be 0/1) or ``regression``.
    """

    name: str
    source: str
    type: TaskType = "classification"


class FunnelConfig(StrictConfig):
    """Explicit funnel: the click task and the entire-space conversion task."""

    click: str
    conversion: str


class LabelsConfig(StrictConfig):
    """``labels`` parameter block.

    Attributes:
        tasks: Tasks to engineer; ``null`` uses the source's default tasks.
        funnel: ``auto`` derives the funnel from the source's click/purchase
            columns (the task whose source is the click column, and the task
            that equals ``click * purchase``); ``none`` declares no funnel; or
            ``{click: ctr, conversion: ctcvr}`` names the tasks.
        chunk_rows: Rows per chunk of the label-counting pass.
    """

    tasks: list[TaskConfig] | None = None
    funnel: Literal["auto", "none"] | FunnelConfig = "auto"
    chunk_rows: ChunkRows = DEFAULT_CHUNK_ROWS

    @field_validator("tasks", mode="after")
    @classmethod
    def _unique_tasks(cls, tasks: list[TaskConfig] | None) -> list[TaskConfig] | None:
        """Reject duplicate task names and an empty task list."""
        if tasks is not None:
            if not tasks:
                raise ConfigError("give at least one task or null")
            names = [t.name for t in tasks]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ConfigError(f"duplicate task names {dupes}")
        return tasks


class SplitRatios(StrictConfig):
    """Target shares of the train/valid/test splits (must sum to 1)."""

    train: float = Field(default=0.8, gt=0.0)
    valid: float = Field(default=0.1, ge=0.0)
    test: float = Field(default=0.1, ge=0.0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> Self:
        """The ratios sum to 1."""
        total = self.train + self.valid + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ConfigError(f"SplitRatios: ratios must sum to 1, got {total}")
        return self


class SplitConfig(StrictConfig):
    """``split`` parameter block.

    Attributes:
        use_source_split: Keep the source's own ``split`` column when it has
            one (otherwise the rows are split here).
        source_valid_share: When the source's split has no ``valid`` rows,
            this share of its ``train`` rows (chosen by the seeded hash)
            becomes ``valid``; 0 keeps ``valid`` empty.
        time_column: Split by this column instead of at random: cutoffs at
            the quantiles given by ``ratios`` (earliest rows train, latest
            test; rows sharing a time value stay together). ``auto`` uses
            the source's time column when it declares one.
        ratios: Target shares of the random or time split.
        seed: Seed of the random split (hash of seed and global row index,
            so the assignment does not depend on chunk sizes).
        chunk_rows: Rows per chunk of the time-cutoff pass.
    """

    use_source_split: bool = True
    source_valid_share: float = Field(default=0.1, ge=0.0, lt=1.0)
    time_column: str | None = None
    ratios: SplitRatios = Field(default_factory=SplitRatios)
    seed: int = Field(default=17, ge=0)
    chunk_rows: ChunkRows = DEFAULT_CHUNK_ROWS


class EmbeddingRule(StrictConfig):
    """How the suggested embedding size of a sparse field is chosen.

    ``fixed``: every field gets ``dim``. ``fourth_root``:
    ``ceil(k * cardinality ** 0.25)`` rounded up to a multiple of
    ``multiple_of`` and clamped to ``[min_dim, max_dim]`` (a handful of
    distinct sizes keeps the grouped embedding efficient).
    """

    rule: Literal["fixed", "fourth_root"] = "fourth_root"
    dim: int = Field(default=16, ge=1)
    k: float = Field(default=2.0, gt=0.0)
    min_dim: int = Field(default=4, ge=1)
    max_dim: int = Field(default=16, ge=1)
    multiple_of: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _ordered_clamp(self) -> Self:
        """The clamp range is ordered."""
        if self.min_dim > self.max_dim:
            raise ConfigError(
                f"EmbeddingRule: min_dim must be <= max_dim, got {self.min_dim} > "
                f"{self.max_dim}"
            )
        return self

    def dim_for(self, cardinality: int) -> int:
        """Suggested embedding size for a field of ``cardinality`` ids."""
        if self.rule == "fixed":
            return self.dim
        raw = math.ceil(self.k * max(cardinality, 1) ** 0.25)
        rounded = -(-raw // self.multiple_of) * self.multiple_of
        return int(min(self.max_dim, max(self.min_dim, rounded)))


class EncodingConfig(StrictConfig):
    """``encoding`` parameter block (see :mod:`mtl_reco.processing.encoder`).

    Attributes:
        min_count: A sparse value needs at least this many train rows to get
            its own id; rarer values share id 0 with missing and unseen ones.
        min_count_overrides: Per-column ``min_count``.
        max_vocab_size: Keep at most this many values per column (the most
            frequent); ``null`` for no cap.
        dense_scaling: Default scaling of dense columns: ``standard``
            (z-score), ``minmax`` (to [0, 1]), ``log1p`` (signed log1p, then
            z-score) or ``none``.
        dense_scaling_overrides: Per-column scaling.
        clip_minmax: Clip min-max scaled values of valid/test rows to [0, 1].
        nan_fill: Value written for a NaN/infinite dense input, after scaling
            (0.0 is the train mean for ``standard``/``log1p``).
        embedding: Suggested embedding size rule.
        chunk_rows: Rows per chunk of the fitting pass.
    """

    min_count: int = Field(default=2, ge=1)
    min_count_overrides: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict
    )
    max_vocab_size: int | None = Field(default=None, ge=1)
    dense_scaling: Scaling = "standard"
    dense_scaling_overrides: dict[str, Scaling] = Field(default_factory=dict)
    clip_minmax: bool = True
    nan_fill: float = Field(default=0.0, allow_inf_nan=False)
    embedding: EmbeddingRule = Field(default_factory=EmbeddingRule)
    chunk_rows: ChunkRows = DEFAULT_CHUNK_ROWS

    def scaling_for(self, column: str) -> str:
        """Scaling method of a dense column."""
        return self.dense_scaling_overrides.get(column, self.dense_scaling)

    def min_count_for(self, column: str) -> int:
        """``min_count`` of a sparse column."""
        return self.min_count_overrides.get(column, self.min_count)
