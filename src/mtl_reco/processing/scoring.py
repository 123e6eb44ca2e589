"""Validation and bookkeeping of the rows a trained model scores (no Kedro).

The scoring input goes through the same Great Expectations suite as the
training data's validation stage (:func:`~mtl_reco.processing.validation.build_checks`
with the rule severities of the ``validation`` parameters), applied to the
columns the input actually has:

* **schema checks** (``required_columns`` for the feature columns,
  ``column_types``) run once, on the first rows, before anything is scored.
  A hard failure, a feature column the fitted encoder needs but the input
  lacks, or an input with no rows raises :class:`ScoringError` naming the
  file(s) and the column;
* **row checks** (``dense_finite``, ``ids_non_negative`` and, only when the
  input has the raw label columns, ``labels_binary``, ``labels_not_null``,
  ``purchase_implies_click``) run on every chunk with Great Expectations'
  ``COMPLETE`` result format. The rows a *hard* check flags
  (``unexpected_index_list``) are rejected: they are not encoded, not
  scored and absent from the output. Rows a *soft* check flags are counted
  and kept. Rules set to ``off`` are not checked.

:func:`score_table` returns the scored rows as a lazy
:class:`~mtl_reco.tables.StreamTable`, so memory stays bounded by one chunk.
While it is consumed it fills a :class:`ScoringStats` (rows read, scored and
rejected per rule and per check with example values and row numbers, and
the unseen-id counts of every sparse field; see :func:`unseen_counts`). At
the end of a pass the stream raises :class:`ScoringError` when the rejected
share is above ``max_rejected_share`` or no row was scored, so a writer that
streams it atomically (:func:`~mtl_reco.tables.write_parquet`) leaves no
output behind. :func:`scoring_report` turns complete statistics into the
JSON ``scoring_report``.

Row numbers are 0-based positions in the input, the ``row`` column of the
scored output.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_reco.processing.config import ValidationConfig
from mtl_reco.processing.encoder import FeatureEncoder
from mtl_reco.processing.ingestion import input_files
from mtl_reco.processing.validation import (
    Check,
    DataValidationError,
    _absorb,
    _batch_definition,
    _entry,
    _Outcome,
    _plain,
    _suite,
    build_checks,
    describe_inputs,
)
from mtl_reco.sources.base import RawSchema
from mtl_reco.sources.registry import options_class, read_source
from mtl_reco.tables import ParquetTable, StreamTable, Table

logger = logging.getLogger(__name__)

PROBE_ROWS = 1024
"""Rows read up front for the schema checks (before anything is scored)."""
SCHEMA_RULES = ("required_columns", "column_types")
_ROW_COUNT = "expect_table_row_count_to_be_between"

UNSEEN_DEFINITION = (
    "share of scored rows whose raw value is present (not null/NaN) but that "
    "the fitted encoder maps to id 0, i.e. a value not in the training "
    "vocabulary: never seen in the train split, seen fewer than min_count "
    "times, beyond max_vocab_size, or not convertible to the vocabulary's "
    "type; rows with a missing raw value are counted apart (missing_rows) "
    "and rejected rows are not counted at all"
)
"""What ``unseen_ids[field].rate`` of the scoring report means."""


class ScoringError(DataValidationError):
    """The scoring input cannot be scored; the message names the file(s)."""


Predict = Callable[[pd.DataFrame], Mapping[str, np.ndarray]]
"""Encoded rows -> ``{output name: (N,) scores}`` (e.g. an ONNX predictor)."""
Flag = tuple[Check, np.ndarray, list[Any], str | None]
"""A row check, the positions it flagged, first values, evaluation error."""


# -- the input -------------------------------------------------------------------


@dataclass(frozen=True)
class ScoringInput:
    """The rows to score and what is known about them.

    Attributes:
        source: ``score.source`` (a source name or ``parquet``).
        schema: Raw schema of the input: the source's schema, or for
            ``parquet`` the training data's raw schema.
        table: The rows, chunk by chunk.
        inputs: Files read (quoted by every message).
        keep: Raw columns copied next to the predictions when present.
    """

    source: str
    schema: RawSchema
    table: Table
    inputs: tuple[str, ...]
    keep: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """``(file a.csv)`` or empty for generated inputs."""
        return describe_inputs(self.inputs)


def open_scoring_input(
    source: str,
    options: Mapping[str, Any],
    training_schema: RawSchema | Mapping[str, Any],
) -> ScoringInput:
    """Open the scoring input lazily.

    Args:
        source: A registered source name (its reader and its schema are used)
            or ``parquet`` for a raw-events parquet file (``options.path``),
            validated against ``training_schema``.
        options: The source's options (``{path: ...}`` for ``parquet``).
        training_schema: Raw schema of the training data (a
            :class:`RawSchema` or the ``raw_schema`` record).

    Raises:
        ScoringError: ``parquet`` without ``options.path``, or a missing file.
        SourceError: The source cannot open its input.
    """
    if source == "parquet":
        path = options.get("path")
        if not path:
            raise ScoringError("score.options.path is required for source 'parquet'")
        try:
            parquet = ParquetTable(path)
        except FileNotFoundError:
            raise ScoringError(f"cannot score: {path} does not exist") from None
        schema = (
            training_schema
            if isinstance(training_schema, RawSchema)
            else RawSchema.from_dict(training_schema)
        )
        return ScoringInput(source, schema, parquet, (str(path),))
    typed = options_class(source).from_dict(dict(options))
    schema, table = read_source(source, typed)
    files = [str(p) for _, p in getattr(table, "files", ())] or input_files(typed)
    return ScoringInput(
        source, schema, table, tuple(files), (*schema.labels, *schema.extras)
    )


def scoring_schema(schema: RawSchema, columns: Iterable[str]) -> RawSchema:
    """The schema the input is checked against, given the columns it has.

    Features (sparse and dense) stay required; label columns, extras and the
    split column are kept only when present, so the label rules apply only
    to inputs that carry the raw labels (the funnel rule only with both).
    """
    present = set(columns)
    funnel = schema.funnel if schema.funnel and set(schema.funnel) <= present else None
    return dataclasses.replace(
        schema,
        labels=tuple(c for c in schema.labels if c in present),
        extras=tuple(c for c in schema.extras if c in present),
        split_column=schema.split_column if schema.split_column in present else None,
        funnel=funnel,
    )


# -- statistics ------------------------------------------------------------------


@dataclass
class CheckTally:
    """What one row check flagged over a whole pass.

    Attributes:
        check: The check (rule, expectation, column, severity).
        unexpected: Rows it flagged.
        examples: First flagged values (JSON-ready).
        first_rows: First flagged row numbers.
        error: Why it could not be evaluated (soft checks only; a hard check
            that cannot be evaluated stops the scoring).
    """

    check: Check
    unexpected: int = 0
    examples: list[Any] = field(default_factory=list)
    first_rows: list[int] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready entry of the report."""
        c = self.check
        return {
            "check": c.id,
            "rule": c.rule,
            "expectation": c.expectation,
            "column": c.column,
            "columns": c.pair,
            "severity": c.severity,
            "action": "reject" if c.severity == "hard" else "keep",
            "unexpected_count": self.unexpected,
            "examples": list(self.examples),
            "first_rows": list(self.first_rows),
            "error": self.error,
        }

    def describe(self) -> str:
        """``expectation on column 'x': 3 rows infinite (e.g. inf), rows 4, 9``."""
        c = self.check
        where = f"{c.expectation} on column '{c.column}'"
        if "column_A" in c.kwargs:
            where = (
                f"{c.expectation} on columns '{c.kwargs['column_A']}' and "
                f"'{c.kwargs['column_B']}'"
            )
        if self.error:
            return f"{where}: could not be evaluated ({self.error})"
        shown = ", ".join(map(str, self.examples[:3]))
        rows = ", ".join(map(str, self.first_rows[:5]))
        return (
            f"{where}: {self.unexpected} rows {c.failure} (e.g. {shown}; "
            f"first rows {rows})"
        )


@dataclass
class _Pass:
    """Counts of one pass over the input (published when it completes)."""

    checks: dict[str, CheckTally]
    sparse: Sequence[str]
    examples: int
    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    rejected_by_rule: dict[str, int] = field(default_factory=dict)
    first_rejected_rows: list[int] = field(default_factory=list)
    unseen: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.unseen = dict.fromkeys(self.sparse, 0)
        self.missing = dict.fromkeys(self.sparse, 0)


@dataclass
class ScoringStats:
    """What scoring saw; the counts are complete once the output was consumed.

    Attributes:
        experiment: Experiment whose model scored.
        source: ``score.source``.
        schema_source: Source named by the raw schema the input was checked
            against (the training source for ``parquet``).
        inputs: Input files.
        severities: Rule severities applied.
        max_rejected_share: Largest share of rejected rows allowed.
        labels_present: Raw label columns found (label rules applied to them).
        labels_absent: Raw label columns the input lacks (rules skipped).
        schema_warnings: Messages of failed soft schema checks.
        complete: A full pass over the input has finished.
    """

    experiment: str
    source: str
    schema_source: str
    inputs: tuple[str, ...]
    severities: dict[str, str]
    max_rejected_share: float
    labels_present: list[str] = field(default_factory=list)
    labels_absent: list[str] = field(default_factory=list)
    schema_warnings: list[str] = field(default_factory=list)
    complete: bool = False
    _result: _Pass | None = field(default=None, repr=False)

    def publish(self, result: _Pass) -> None:
        """Record the counts of a completed pass (replaces earlier ones)."""
        self._result = result
        self.complete = True

    @property
    def result(self) -> _Pass:
        """Counts of the last complete pass.

        Raises:
            ScoringError: The scored table was never consumed to the end.
        """
        if self._result is None:
            raise ScoringError(
                "scoring statistics are incomplete: the scored table was not "
                "written (consume it before reporting)"
            )
        return self._result

    @property
    def where(self) -> str:
        """``(file a.csv)`` or empty."""
        return describe_inputs(self.inputs)

    @property
    def rejected_share(self) -> float:
        """Rejected rows / rows read (0 for no rows)."""
        r = self.result
        return r.rows_rejected / r.rows_read if r.rows_read else 0.0


# -- validation of chunks --------------------------------------------------------


class RowValidator:
    """The training suite, applied to scoring chunks.

    Args:
        scoring: The scoring input.
        validation: Rule severities (``validation`` parameters), examples.
        features: Columns the fitted encoder needs (sparse then dense).
    """

    def __init__(
        self,
        scoring: ScoringInput,
        validation: ValidationConfig,
        features: Sequence[str],
    ) -> None:
        self.scoring = scoring
        self.features = list(features)
        self.severities = validation.severities(scoring.schema.source)
        self.examples = validation.examples
        self.row_checks: list[Check] = []
        self._suite: Any = None
        self._batch: Any = None

    def prepare(self, probe: pd.DataFrame) -> tuple[RawSchema, list[str]]:
        """Run the schema checks on the first rows and build the row suite.

        Args:
            probe: The first rows of the input (at least one).

        Returns:
            The schema actually checked and the soft schema-warning messages.

        Raises:
            ScoringError: A hard schema check failed, or a feature column of
                the encoder is missing; the message names file and column.
        """
        columns = [str(c) for c in probe.columns]
        schema = scoring_schema(self.scoring.schema, columns)
        checks = build_checks(schema, self.severities, probe.dtypes.to_dict())
        schema_checks = [c for c in checks if c.rule in SCHEMA_RULES]
        self.row_checks = [
            c
            for c in checks
            if c.rule not in SCHEMA_RULES and c.expectation != _ROW_COUNT
        ]
        self._batch = _batch_definition(f"score_{self.scoring.schema.source}")
        suite_name = f"scoring.{self.scoring.schema.source}"
        hard: list[str] = []
        soft: list[str] = []
        if schema_checks:
            outcomes = {c.id: _Outcome(c) for c in schema_checks}
            result = self._batch.get_batch(
                batch_parameters={"dataframe": probe.reset_index(drop=True)}
            ).validate(
                _suite(suite_name, schema_checks),
                result_format={"result_format": "SUMMARY"},
            )
            _absorb(outcomes, result, self.examples)
            for outcome in outcomes.values():
                entry = _entry(outcome, columns)
                if not entry["success"]:
                    bucket = hard if outcome.check.severity == "hard" else soft
                    bucket.append(entry["message"])
        missing = [c for c in self.features if c not in columns]
        hard += [
            f"feature column '{c}' needed by the fitted encoder is missing"
            for c in missing
            if f"column '{c}': column missing" not in " ".join(hard)
        ]
        if hard:
            raise ScoringError(
                f"cannot score the input{self.scoring.where}: " + "; ".join(hard)
            )
        self._suite = _suite(suite_name, self.row_checks)
        return schema, soft

    def flag(self, chunk: pd.DataFrame, start: int) -> list[Flag]:
        """Rows of ``chunk`` each row check flags.

        Args:
            chunk: Rows ``start .. start + len(chunk) - 1`` of the input.
            start: Row number of the chunk's first row.

        Returns:
            Per row check: the check, the flagged positions in the chunk
            (sorted ``int64``), the first flagged values and an evaluation
            error (``None`` when evaluated).

        Raises:
            ScoringError: A hard check could not be evaluated.
        """
        if not self.row_checks or not len(chunk):
            return []
        by_id = {c.id: c for c in self.row_checks}
        result = self._batch.get_batch(
            batch_parameters={"dataframe": chunk.reset_index(drop=True)}
        ).validate(
            self._suite,
            result_format={
                "result_format": "COMPLETE",
                "partial_unexpected_count": self.examples,
                "return_unexpected_index_query": False,
            },
        )
        flagged: list[Flag] = []
        for item in result.results:
            check = by_id.get(str((item.expectation_config.meta or {})["check_id"]))
            if check is None:
                continue
            info = item.exception_info or {}
            res = item.result or {}
            error = None
            if info.get("raised_exception"):
                error = str(info.get("exception_message") or "evaluation failed")
            elif res.get("unexpected_count") and "unexpected_index_list" not in res:
                error = "Great Expectations returned no unexpected_index_list"
            if error is not None:
                if check.severity == "hard":
                    raise ScoringError(
                        f"cannot score the input{self.scoring.where}: "
                        f"{check.expectation} on column '{check.column}' could not "
                        f"be evaluated on rows from {start} ({error})"
                    )
                flagged.append((check, np.zeros(0, np.int64), [], error))
                continue
            positions = np.sort(
                np.asarray(res.get("unexpected_index_list") or [], dtype=np.int64)
            )
            values = [_plain(v) for v in (res.get("unexpected_list") or [])]
            flagged.append((check, positions, values[: self.examples], None))
        return flagged


# -- unseen ids ------------------------------------------------------------------


def unseen_counts(
    encoder: FeatureEncoder, raw: pd.DataFrame, encoded: pd.DataFrame
) -> dict[str, tuple[int, int]]:
    """Per sparse field: rows with an unseen value and rows with no value.

    Args:
        encoder: The fitted encoder.
        raw: Raw rows (the scored ones).
        encoded: ``encoder.transform(raw)`` (same rows, same order).

    Returns:
        ``{field: (unseen, missing)}``: ``unseen`` counts rows whose raw value
        is present (not null/NaN) but encoded as id 0 (see
        :data:`UNSEEN_DEFINITION`); ``missing`` counts rows whose raw value
        is null/NaN (also id 0, but not unseen).
    """
    out: dict[str, tuple[int, int]] = {}
    for name in encoder.sparse_names:
        present = raw[name].notna().to_numpy(dtype=bool)
        zero = encoded[name].to_numpy() == 0
        out[name] = (int((present & zero).sum()), int((~present).sum()))
    return out


# -- scoring ---------------------------------------------------------------------


def _first_non_empty(table: Table, chunk_rows: int) -> pd.DataFrame | None:
    """The first non-empty chunk (``None`` when the table has no rows)."""
    for chunk in table.iter_chunks(chunk_rows=chunk_rows):
        if len(chunk):
            return chunk
    return None


def prepare_scoring(
    scoring: ScoringInput,
    encoder: FeatureEncoder,
    validation: ValidationConfig,
    *,
    experiment: str,
    max_rejected_share: float,
) -> tuple[RowValidator, ScoringStats]:
    """Check the input's first rows now, before anything is scored.

    Raises:
        ScoringError: The input has no rows, lacks a feature column or fails a
            hard schema check (message names the file and the column).
    """
    probe = _first_non_empty(scoring.table, PROBE_ROWS)
    if probe is None:
        raise ScoringError(
            f"cannot score the input{scoring.where}: it has no rows "
            f"(source '{scoring.source}')"
        )
    validator = RowValidator(
        scoring, validation, [*encoder.sparse_names, *encoder.dense_names]
    )
    schema, warnings = validator.prepare(probe)
    for message in warnings:
        logger.warning("scoring input%s (soft): %s", scoring.where, message)
    stats = ScoringStats(
        experiment=experiment,
        source=scoring.source,
        schema_source=scoring.schema.source,
        inputs=scoring.inputs,
        severities=validator.severities.to_dict(),
        max_rejected_share=float(max_rejected_share),
        labels_present=list(schema.labels),
        labels_absent=[c for c in scoring.schema.labels if c not in schema.labels],
        schema_warnings=warnings,
    )
    return validator, stats


def score_table(
    scoring: ScoringInput,
    encoder: FeatureEncoder,
    predict: Predict,
    validator: RowValidator,
    stats: ScoringStats,
    keep: Sequence[str] = (),
) -> StreamTable:
    """The scored rows of the input, validated and encoded chunk by chunk.

    Args:
        scoring: The input.
        encoder: Encoder fitted on the training split.
        predict: Scores encoded rows.
        validator: From :func:`prepare_scoring`.
        stats: From :func:`prepare_scoring`; filled at the end of each pass.
        keep: Input columns copied next to the predictions when present.

    Returns:
        A lazy table: ``row`` (position in the input), the kept columns and
        ``p_<output>`` per model output; rejected rows are absent. A pass
        raises :class:`ScoringError` after the last chunk when the rejected
        share is above ``stats.max_rejected_share`` or nothing was scored.
    """

    def produce(chunk_rows: int) -> Iterator[pd.DataFrame]:
        tally = _Pass(
            checks={c.id: CheckTally(c) for c in validator.row_checks},
            sparse=encoder.sparse_names,
            examples=validator.examples,
        )
        start = 0
        for chunk in scoring.table.iter_chunks(chunk_rows=chunk_rows):
            n = len(chunk)
            reject = _reject_mask(validator.flag(chunk, start), n, start, tally)
            kept = chunk[~reject] if reject.any() else chunk
            tally.rows_read += n
            tally.rows_scored += len(kept)
            first, start = start, start + n
            if not len(kept):
                continue
            encoded = encoder.transform(kept)
            for name, (unseen, missing) in unseen_counts(
                encoder, kept, encoded
            ).items():
                tally.unseen[name] += unseen
                tally.missing[name] += missing
            out = pd.DataFrame(
                {"row": np.flatnonzero(~reject).astype(np.int64) + first}
            )
            for col in keep:
                if col in kept.columns:
                    out[col] = kept[col].to_numpy()
            for name, values in predict(encoded).items():
                out[f"p_{name}"] = values
            yield out
        stats.publish(tally)
        check_rejections(stats)  # raises before the writer completes the file

    return StreamTable(produce)


def _reject_mask(
    flagged: Sequence[Flag],
    n: int,
    start: int,
    tally: _Pass,
) -> np.ndarray:
    """Rows to reject (flagged by a hard check); counts added to ``tally``."""
    reject = np.zeros(n, dtype=bool)
    by_rule: dict[str, np.ndarray] = {}
    for check, positions, values, error in flagged:
        entry = tally.checks[check.id]
        if error is not None:
            entry.error = entry.error or error
            continue
        entry.unexpected += len(positions)
        room = tally.examples - len(entry.examples)
        if room > 0:
            entry.examples.extend(values[:room])
        room = tally.examples - len(entry.first_rows)
        if room > 0:
            entry.first_rows.extend(int(p) + start for p in positions[:room])
        if check.severity == "hard" and len(positions):
            reject[positions] = True
            mask = by_rule.setdefault(check.rule, np.zeros(n, dtype=bool))
            mask[positions] = True
    for rule, mask in by_rule.items():
        tally.rejected_by_rule[rule] = tally.rejected_by_rule.get(rule, 0) + int(
            mask.sum()
        )
    rejected = np.flatnonzero(reject)
    tally.rows_rejected += len(rejected)
    room = tally.examples - len(tally.first_rejected_rows)
    if room > 0:
        tally.first_rejected_rows.extend(int(p) + start for p in rejected[:room])
    return reject


def check_rejections(stats: ScoringStats) -> None:
    """Raise when too many rows were rejected or none was scored.

    Raises:
        ScoringError: Rejected share above ``stats.max_rejected_share`` (the
            message gives the count per rule and per check, with examples
            and first row numbers), or every row rejected.
    """
    r = stats.result
    if stats.rejected_share <= stats.max_rejected_share and r.rows_scored:
        return
    per_rule = ", ".join(f"{k} {v}" for k, v in sorted(r.rejected_by_rule.items()))
    details = "; ".join(
        t.describe()
        for t in r.checks.values()
        if t.check.severity == "hard" and t.unexpected
    )
    head = (
        f"too many rejected rows in the scoring input{stats.where}: "
        f"{r.rows_rejected} of {r.rows_read} rows "
        f"({stats.rejected_share:.2%}) failed validation, more than "
        f"score.max_rejected_share = {stats.max_rejected_share:.2%}"
    )
    if not r.rows_scored and stats.rejected_share <= stats.max_rejected_share:
        head = (
            f"no row of the scoring input{stats.where} passed validation "
            f"({r.rows_rejected} of {r.rows_read} rejected)"
        )
    raise ScoringError(f"{head}. Rejected per rule: {per_rule}. Checks: {details}")


# -- the report ------------------------------------------------------------------


def scoring_report(
    stats: ScoringStats, rows_written: int | None = None
) -> dict[str, Any]:
    """The JSON ``scoring_report`` of a completed scoring pass.

    Args:
        stats: Statistics of a pass that ran to the end.
        rows_written: Rows of the written scores, cross-checked against the
            count of scored rows when given.

    Returns:
        ``experiment``, ``source``, ``inputs``, ``rows_read``,
        ``rows_scored``, ``rows_rejected``, ``rejected`` (share, allowed
        share, rows per rule, rows per check, first row numbers),
        ``checks`` (every row check with its count, examples, first rows and
        action), ``label_rules``,
        ``schema_warnings`` and ``unseen_ids`` (per sparse field:
        ``unseen_rows``, ``missing_rows``, ``rate`` = unseen rows / scored
        rows, see :data:`UNSEEN_DEFINITION`).

    Raises:
        ScoringError: The pass did not complete, its counts disagree with
            ``rows_written``, or the rejection thresholds are broken.
    """
    r = stats.result
    if rows_written is not None and rows_written != r.rows_scored:
        raise ScoringError(
            f"scoring statistics count {r.rows_scored} scored rows but "
            f"{rows_written} were written"
        )
    check_rejections(stats)
    scored = r.rows_scored
    return {
        "experiment": stats.experiment,
        "source": stats.source,
        "schema_source": stats.schema_source,
        "inputs": list(stats.inputs),
        "rows_read": r.rows_read,
        "rows_scored": scored,
        "rows_rejected": r.rows_rejected,
        "rejected": {
            "share": stats.rejected_share,
            "max_share": stats.max_rejected_share,
            "by_rule": dict(sorted(r.rejected_by_rule.items())),
            "by_check": {
                t.check.id: t.unexpected
                for t in r.checks.values()
                if t.check.severity == "hard" and t.unexpected
            },
            "first_rows": list(r.first_rejected_rows),
        },
        "checks": [t.to_dict() for t in r.checks.values()],
        "label_rules": {
            "applied_to": list(stats.labels_present),
            "skipped_absent": list(stats.labels_absent),
        },
        "schema_warnings": list(stats.schema_warnings),
        "severities": dict(stats.severities),
        "unseen_ids": {
            name: {
                "unseen_rows": r.unseen[name],
                "missing_rows": r.missing[name],
                "rate": r.unseen[name] / scored if scored else math.nan,
            }
            for name in r.sparse
        },
        "unseen_definition": UNSEEN_DEFINITION,
    }


def summary_line(report: Mapping[str, Any]) -> str:
    """One line: rows scored/rejected per rule and the highest unseen rate."""
    rules = report["rejected"]["by_rule"]
    per_rule = f" ({', '.join(f'{k} {v}' for k, v in rules.items())})" if rules else ""
    rates = {k: v["rate"] for k, v in report["unseen_ids"].items()}
    worst = max(rates.items(), key=lambda kv: kv[1], default=None)
    inputs = ", ".join(Path(p).name for p in report["inputs"]) or "generated rows"
    return (
        f"scored {report['rows_scored']} of {report['rows_read']} rows of "
        f"{report['source']} input {inputs} with experiment "
        f"'{report['experiment']}': {report['rows_rejected']} rejected{per_rule}; "
        "highest unseen-id rate " + (f"{worst[0]}={worst[1]:.3f}" if worst else "n/a")
    )
