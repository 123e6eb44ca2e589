"""Typed parameters of the data-processing stages (no framework import).

Each ``parameters_data_processing.yml`` block becomes one of these strict
dataclasses (Kedro instantiates them from the YAML before any node runs, so a
misspelt key fails early with a "did you mean" suggestion)::

    sources:    {simulated: {n_rows: ...}, census_income: {path: ...}, ...}
    validation: {rules: {labels_binary: hard, purchase_implies_click: soft, ...}}
    labels:     {tasks: null, funnel: auto}
    split:      {use_source_split: true, time_column: null, ratios: {...}, seed: 17}
    encoding:   {min_count: 2, dense_scaling: standard, embedding: {...}, ...}

The dataset itself is chosen by the top-level ``dataset`` parameter.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mtl_reco.sources.registry import available_sources, options_class
from mtl_reco.typed_config import ConfigError, StrictConfig

DEFAULT_CHUNK_ROWS = 500_000

Severity = Literal["hard", "soft", "off"]
"""``hard`` stops the run, ``soft`` only warns, ``off`` skips the rule."""

TaskType = Literal["classification", "regression"]
Scaling = Literal["standard", "minmax", "log1p", "none"]


def _check_chunk_rows(owner: str, chunk_rows: int) -> None:
    if chunk_rows < 1:
        raise ConfigError(f"{owner}.chunk_rows must be >= 1, got {chunk_rows}")


def _make_sources_config() -> type[StrictConfig]:
    """One optional block per registered source, checked by its options class."""
    fields = [
        (name, Any, dataclasses.field(default=None)) for name in available_sources()
    ]
    cls = dataclasses.make_dataclass(
        "SourcesConfig",
        fields,
        bases=(StrictConfig,),
        frozen=True,
        namespace={
            "__doc__": (
                "Per-source options, one optional block per registered source.\n\n"
                "Each block becomes an instance of that source's options class\n"
                "(strict: unknown keys fail with a suggestion); a missing block\n"
                "means the source's defaults."
            ),
            "validate": _validate_sources,
            "for_source": _for_source,
        },
    )
    cls.__module__ = __name__
    return cls


def _validate_sources(self: Any) -> None:
    """Turn every block into its source's typed options."""
    for name in available_sources():
        value = getattr(self, name)
        cls = options_class(name)
        if value is None or isinstance(value, cls):
            continue
        if not isinstance(value, dict):
            raise ConfigError(
                f"SourcesConfig.{name}: expected a mapping of options, got {value!r}"
            )
        try:
            typed = cls.from_dict(value)
        except ConfigError as exc:
            raise ConfigError(f"SourcesConfig.{name}: {exc}") from None
        object.__setattr__(self, name, typed)


def _for_source(self: Any, name: str) -> StrictConfig:
    """The options of source ``name`` (its defaults when no block is given)."""
    options_class(name)  # unknown source -> SourceError naming the choices
    value = getattr(self, name, None)
    if value is None:
        return options_class(name)()
    return value  # type: ignore[no-any-return]


if TYPE_CHECKING:

    class SourcesConfig(StrictConfig):
        """Static view of the generated class (for type checkers)."""

        def __init__(self, **blocks: Any) -> None: ...

        def for_source(self, name: str) -> StrictConfig:
            """The options of source ``name``."""
            ...

else:
    SourcesConfig = _make_sources_config()
    """``sources`` parameter block: ``SourcesConfig(simulated={...}, ...)``.

    Built from :func:`mtl_reco.sources.registry.available_sources`, so a
    source registered later gets its block without touching this module.
    """


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class ValidationConfig(StrictConfig):
    """``validation`` parameter block.

    Attributes:
        rules: Default severity of each rule.
        source_overrides: Per-source severities that replace the defaults,
            e.g. ``{census_income: {dense_finite: soft}}``.
        chunk_rows: Rows validated per Great Expectations batch.
        examples: Unexpected values kept per check in the report.
    """

    rules: RuleSeverities = field(default_factory=RuleSeverities)
    source_overrides: dict[str, dict[str, Severity]] = field(default_factory=dict)
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    examples: int = 5

    def validate(self) -> None:
        """Reject unknown rule names in the overrides."""
        _check_chunk_rows("ValidationConfig", self.chunk_rows)
        known = [f.name for f in dataclasses.fields(RuleSeverities)]
        for source, block in self.source_overrides.items():
            for rule in block:
                if rule not in known:
                    close = difflib.get_close_matches(rule, known, n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise ConfigError(
                        f"ValidationConfig.source_overrides.{source}: unknown rule "
                        f"'{rule}'{hint}. Known rules: {', '.join(known)}"
                    )
        if self.examples < 0:
            raise ConfigError("ValidationConfig.examples must be >= 0")

    def severities(self, source: str) -> RuleSeverities:
        """Rule severities for ``source`` (defaults plus its overrides)."""
        override = self.source_overrides.get(source) or {}
        return dataclasses.replace(self.rules, **override)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class FunnelConfig(StrictConfig):
    """Explicit funnel: the click task and the entire-space conversion task."""

    click: str
    conversion: str


@dataclass(frozen=True)
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
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    def validate(self) -> None:
        """Reject duplicate task names and an empty task list."""
        _check_chunk_rows("LabelsConfig", self.chunk_rows)
        if self.tasks is not None:
            if not self.tasks:
                raise ConfigError("LabelsConfig.tasks: give at least one task or null")
            names = [t.name for t in self.tasks]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ConfigError(f"LabelsConfig.tasks: duplicate task names {dupes}")


@dataclass(frozen=True)
class SplitRatios(StrictConfig):
    """Target shares of the train/valid/test splits (must sum to 1)."""

    train: float = 0.8
    valid: float = 0.1
    test: float = 0.1

    def validate(self) -> None:
        """Ratios are non-negative, train is positive and they sum to 1."""
        values = (self.train, self.valid, self.test)
        if min(values) < 0 or self.train <= 0:
            raise ConfigError(f"SplitRatios: ratios must be >= 0 (train > 0): {values}")
        if not math.isclose(sum(values), 1.0, abs_tol=1e-6):
            raise ConfigError(f"SplitRatios: ratios must sum to 1, got {sum(values)}")


@dataclass(frozen=True)
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
    source_valid_share: float = 0.1
    time_column: str | None = None
    ratios: SplitRatios = field(default_factory=SplitRatios)
    seed: int = 17
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    def validate(self) -> None:
        """Value checks."""
        _check_chunk_rows("SplitConfig", self.chunk_rows)
        if not 0.0 <= self.source_valid_share < 1.0:
            raise ConfigError("SplitConfig.source_valid_share must be in [0, 1)")
        if self.seed < 0:
            raise ConfigError("SplitConfig.seed must be >= 0")


@dataclass(frozen=True)
class EmbeddingRule(StrictConfig):
    """How the suggested embedding size of a sparse field is chosen.

    ``fixed``: every field gets ``dim``. ``fourth_root``:
    ``ceil(k * cardinality ** 0.25)`` rounded up to a multiple of
    ``multiple_of`` and clamped to ``[min_dim, max_dim]`` (a handful of
    distinct sizes keeps the grouped embedding efficient).
    """

    rule: Literal["fixed", "fourth_root"] = "fourth_root"
    dim: int = 16
    k: float = 2.0
    min_dim: int = 4
    max_dim: int = 16
    multiple_of: int = 4

    def validate(self) -> None:
        """Sizes are positive and the clamp range is ordered."""
        if min(self.dim, self.min_dim, self.max_dim, self.multiple_of) < 1:
            raise ConfigError("EmbeddingRule: dims and multiple_of must be >= 1")
        if self.min_dim > self.max_dim:
            raise ConfigError("EmbeddingRule: min_dim must be <= max_dim")
        if self.k <= 0:
            raise ConfigError("EmbeddingRule: k must be > 0")

    def dim_for(self, cardinality: int) -> int:
        """Suggested embedding size for a field of ``cardinality`` ids."""
        if self.rule == "fixed":
            return self.dim
        raw = math.ceil(self.k * max(cardinality, 1) ** 0.25)
        rounded = -(-raw // self.multiple_of) * self.multiple_of
        return int(min(self.max_dim, max(self.min_dim, rounded)))


@dataclass(frozen=True)
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

    min_count: int = 2
    min_count_overrides: dict[str, int] = field(default_factory=dict)
    max_vocab_size: int | None = None
    dense_scaling: Scaling = "standard"
    dense_scaling_overrides: dict[str, Scaling] = field(default_factory=dict)
    clip_minmax: bool = True
    nan_fill: float = 0.0
    embedding: EmbeddingRule = field(default_factory=EmbeddingRule)
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    def validate(self) -> None:
        """Value checks."""
        _check_chunk_rows("EncodingConfig", self.chunk_rows)
        counts = [self.min_count, *self.min_count_overrides.values()]
        if min(counts) < 1:
            raise ConfigError("EncodingConfig: min_count values must be >= 1")
        if self.max_vocab_size is not None and self.max_vocab_size < 1:
            raise ConfigError("EncodingConfig.max_vocab_size must be >= 1 or null")
        if not math.isfinite(self.nan_fill):
            raise ConfigError("EncodingConfig.nan_fill must be a finite number")

    def scaling_for(self, column: str) -> str:
        """Scaling method of a dense column."""
        return self.dense_scaling_overrides.get(column, self.dense_scaling)

    def min_count_for(self, column: str) -> int:
        """``min_count`` of a sparse column."""
        return self.min_count_overrides.get(column, self.min_count)
