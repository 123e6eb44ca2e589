"""Validation of raw events with Great Expectations, chunk by chunk.

One expectation suite per source is built from its
:class:`~mtl_reco.sources.base.RawSchema` and the rule severities of
:class:`~mtl_reco.processing.config.ValidationConfig`:

=======================  =====================================================
rule                     expectations (Great Expectations 1.x)
=======================  =====================================================
required_columns         ``expect_column_to_exist`` for every schema column
column_types             ``expect_column_values_to_be_in_type_list`` (numeric)
                         for label and dense columns
row_count                ``expect_table_row_count_to_be_between`` (>= 1 row),
                         for the table and, when the source reads one file
                         per split, for each of those splits (naming its file)
labels_binary            ``expect_column_values_to_be_in_set`` {0, 1}
labels_not_null          ``expect_column_values_to_not_be_null``
purchase_implies_click   ``expect_column_pair_values_a_to_be_greater_than_b``
                         (click >= purchase) when the source has a funnel
dense_finite             ``expect_column_values_to_not_be_null`` (NaN) and
                         ``expect_column_values_to_be_between`` (+-inf)
ids_non_negative         ``expect_column_values_to_be_between`` (>= 0) for
                         integer-typed sparse columns
=======================  =====================================================

Each check is ``hard`` (a failure stops the run), ``soft`` (a failure is
logged as a warning) or ``off``. Schema checks (columns, dtypes) run on the
first chunk; row checks run on every chunk and their counts are summed, so
memory stays bounded by one chunk. Row counts (of the table, and per split
value when the schema has a split column) are tallied outside Great
Expectations while streaming, so a header-only input file of a split is
reported as that split having 0 rows, with the file named.
:func:`validate_table` always returns the full report (also when checks
fail); :func:`raise_for_failures` turns hard failures into a
:class:`DataValidationError` whose message names the expectation, the column
and how many rows broke it.

Great Expectations takes seconds to import, so it is imported lazily inside
:func:`validate_table`, never at module import.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl_reco.processing.config import RuleSeverities, ValidationConfig
from mtl_reco.sources.base import RawSchema
from mtl_reco.tables import Table

logger = logging.getLogger(__name__)

_FLOAT_MAX = float(np.finfo(np.float64).max)
NUMERIC_TYPES = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "bool",
    "Int8Dtype",
    "Int16Dtype",
    "Int32Dtype",
    "Int64Dtype",
    "UInt8Dtype",
    "UInt16Dtype",
    "UInt32Dtype",
    "UInt64Dtype",
    "Float32Dtype",
    "Float64Dtype",
    "BooleanDtype",
)
"""Type names accepted by ``expect_column_values_to_be_in_type_list``."""


class DataValidationError(ValueError):
    """A hard validation check failed; the message lists every failure."""


@dataclass(frozen=True)
class Check:
    """One expectation of the suite, with what it means for a person.

    Attributes:
        id: Unique key (``rule:column``) stored in the expectation's ``meta``.
        rule: Rule name (a field of :class:`RuleSeverities`).
        expectation: Great Expectations expectation type (snake case).
        column: Column checked (``None`` for table-level checks).
        kwargs: Expectation arguments besides ``column``.
        severity: ``hard`` or ``soft``.
        scope: ``schema`` (first chunk only), ``rows`` (every chunk) or
            ``split`` (rows of one split value, tallied outside Great
            Expectations; ``kwargs`` then hold ``split`` and ``file``).
        failure: How a failing row is described (``outside {0, 1}``).
    """

    id: str
    rule: str
    expectation: str
    column: str | None
    kwargs: Mapping[str, Any]
    severity: str
    scope: str
    failure: str = ""

    @property
    def pair(self) -> list[str] | None:
        """``[column_A, column_B]`` of a column-pair check, else ``None``."""
        if "column_A" in self.kwargs:
            return [self.kwargs["column_A"], self.kwargs["column_B"]]
        return None


@dataclass
class _Outcome:
    """Aggregated result of one check over every chunk."""

    check: Check
    evaluated: bool = False
    success: bool = True
    element_count: int = 0
    unexpected_count: int = 0
    missing_count: int = 0
    observed: Any = None
    examples: list[Any] = field(default_factory=list)
    error: str | None = None


def build_checks(
    schema: RawSchema,
    severities: RuleSeverities,
    dtypes: Mapping[str, Any],
) -> list[Check]:
    """Build the checks for ``schema`` given the columns found in the data.

    Args:
        schema: The source's raw schema.
        severities: Severity of each rule (``off`` rules are left out).
        dtypes: Column name -> dtype of the first chunk. Row checks are only
            built for present columns (a missing column is reported once by
            ``required_columns``); range checks only for numeric columns.

    Returns:
        The checks, schema checks first.
    """
    checks: list[Check] = []

    def add(
        rule: str, expectation: str, column: str | None, scope: str, **kw: Any
    ) -> None:
        severity = getattr(severities, rule)
        if severity == "off":
            return
        failure = kw.pop("failure", "")
        checks.append(
            Check(
                id=f"{rule}:{column or '*'}:{expectation}",
                rule=rule,
                expectation=expectation,
                column=column,
                kwargs=kw,
                severity=severity,
                scope=scope,
                failure=failure,
            )
        )

    present = set(dtypes)
    for col in schema.columns:
        add("required_columns", "expect_column_to_exist", col, "schema")
    for col in (*schema.labels, *schema.dense):
        if col in present:
            add(
                "column_types",
                "expect_column_values_to_be_in_type_list",
                col,
                "schema",
                type_list=list(NUMERIC_TYPES),
            )
    add(
        "row_count",
        "expect_table_row_count_to_be_between",
        None,
        "rows",
        min_value=1,
    )
    for col in schema.labels:
        if col not in present:
            continue
        add(
            "labels_binary",
            "expect_column_values_to_be_in_set",
            col,
            "rows",
            value_set=[0, 1],
            failure="outside {0, 1}",
        )
        add(
            "labels_not_null",
            "expect_column_values_to_not_be_null",
            col,
            "rows",
            failure="with a missing label",
        )
    if schema.funnel is not None and set(schema.funnel) <= present:
        click, purchase = schema.funnel
        add(
            "purchase_implies_click",
            "expect_column_pair_values_a_to_be_greater_than_b",
            None,
            "rows",
            column_A=click,
            column_B=purchase,
            or_equal=True,
            ignore_row_if="either_value_is_missing",
            failure=f"with {purchase} = 1 but {click} = 0",
        )
    for col in schema.dense:
        if col not in present:
            continue
        add(
            "dense_finite",
            "expect_column_values_to_not_be_null",
            col,
            "rows",
            failure="NaN or missing",
        )
        if _is_numeric(dtypes[col]):
            add(
                "dense_finite",
                "expect_column_values_to_be_between",
                col,
                "rows",
                min_value=-_FLOAT_MAX,
                max_value=_FLOAT_MAX,
                failure="infinite",
            )
    for col in schema.sparse:
        if col in present and _is_integer(dtypes[col]):
            add(
                "ids_non_negative",
                "expect_column_values_to_be_between",
                col,
                "rows",
                min_value=0,
                failure="negative",
            )
    return checks


def _is_numeric(dtype: Any) -> bool:
    return bool(
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    )


def _is_integer(dtype: Any) -> bool:
    return bool(
        pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    )


def _expectation(check: Check) -> Any:
    """The Great Expectations object of a check."""
    import great_expectations.expectations as gxe

    cls_name = "".join(part.title() for part in check.expectation.split("_"))
    cls = getattr(gxe, cls_name)
    kwargs = dict(check.kwargs)
    if check.column is not None:
        kwargs["column"] = check.column
    return cls(
        **kwargs,
        severity="critical" if check.severity == "hard" else "warning",
        meta={"check_id": check.id, "rule": check.rule},
    )


def _suite(name: str, checks: Sequence[Check]) -> Any:
    import great_expectations as gx

    return gx.ExpectationSuite(
        name=name, expectations=[_expectation(c) for c in checks]
    )


def _batch_definition(source: str) -> Any:
    """A pandas whole-dataframe batch definition in an ephemeral context."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    datasource = context.data_sources.add_pandas(name=f"{source}_raw_events")
    asset = datasource.add_dataframe_asset(name="raw_events")
    return asset.add_batch_definition_whole_dataframe("chunk")


def validate_table(
    table: Table,
    schema: RawSchema,
    config: ValidationConfig,
    *,
    inputs: Sequence[str] = (),
    input_splits: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Validate ``table`` chunk by chunk and return the aggregated report.

    Args:
        table: The raw events.
        schema: Their raw schema (``schema.source`` names the suite).
        config: Rule severities, chunk size and number of examples kept.
        inputs: Files the events were read from (named in messages).
        input_splits: Split value -> the input file whose rows carry it
            (the ``raw_schema`` record's ``input_splits``). When the schema
            has a split column, the ``row_count`` rule also requires at
            least one row of each of these splits.

    Returns:
        A JSON-ready report: ``success`` (no hard failure), counts of hard
        and soft failures, ``rows``, ``split_rows`` (rows per split value,
        when the schema has a split column), the suite, and one entry per
        check with its counts, examples and ``message``. Soft failures are
        logged as warnings here; hard ones are raised by
        :func:`raise_for_failures`.
    """
    import great_expectations as gx

    severities = config.severities(schema.source)
    result_format = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": config.examples,
    }
    batch_definition = _batch_definition(schema.source)
    suite_name = f"raw_events.{schema.source}"
    outcomes: dict[str, _Outcome] = {}
    rows_suite: Any = None
    rows = chunks = 0
    columns: list[str] = []
    split_column = schema.split_column
    split_rows: dict[str, int] | None = None
    for chunk in _chunks(table, config.chunk_rows):
        if rows_suite is None:
            columns = [str(c) for c in chunk.columns]
            checks = build_checks(schema, severities, chunk.dtypes.to_dict())
            outcomes = {c.id: _Outcome(c) for c in checks}
            schema_checks = [c for c in checks if c.scope == "schema"]
            rows_checks = [c for c in checks if c.scope == "rows"]
            full_suite = _suite(suite_name, checks)
            if schema_checks:
                _absorb(
                    outcomes,
                    batch_definition.get_batch(
                        batch_parameters={"dataframe": chunk}
                    ).validate(
                        _suite(suite_name, schema_checks), result_format=result_format
                    ),
                    config.examples,
                )
            rows_suite = _suite(suite_name, rows_checks)
        rows += len(chunk)
        chunks += 1
        if split_column is not None and split_column in chunk.columns:
            split_rows = split_rows if split_rows is not None else {}
            for value, count in chunk[split_column].value_counts().items():
                split_rows[str(value)] = split_rows.get(str(value), 0) + int(count)
        if rows_suite.expectations and (len(chunk) or chunks == 1):
            _absorb(
                outcomes,
                batch_definition.get_batch(
                    batch_parameters={"dataframe": chunk.reset_index(drop=True)}
                ).validate(rows_suite, result_format=result_format),
                config.examples,
            )
    report_checks = []
    for outcome in outcomes.values():
        if outcome.check.expectation == "expect_table_row_count_to_be_between":
            outcome.observed = rows
            outcome.success = rows >= 1
            outcome.evaluated = True
            report_checks.append(_entry(outcome, columns))
            if split_rows is not None:
                per_split = _split_row_counts(
                    outcome.check, input_splits or {}, split_rows
                )
                report_checks += [_entry(o, columns) for o in per_split]
            continue
        entry = _entry(outcome, columns)
        report_checks.append(entry)
    hard = [c for c in report_checks if not c["success"] and c["severity"] == "hard"]
    soft = [c for c in report_checks if not c["success"] and c["severity"] == "soft"]
    for entry in soft:
        logger.warning(
            "validation warning (soft) for source '%s': %s",
            schema.source,
            entry["message"],
        )
    report = {
        "source": schema.source,
        "suite_name": suite_name,
        "success": not hard,
        "hard_failures": len(hard),
        "soft_failures": len(soft),
        "rows": rows,
        "split_rows": split_rows,
        "chunks": chunks,
        "columns": columns,
        "inputs": list(inputs),
        "input_splits": dict(input_splits or {}),
        "great_expectations_version": gx.__version__,
        "severities": severities.to_dict(),
        "checks": report_checks,
        "suite": full_suite.to_json_dict() if rows_suite is not None else None,
    }
    logger.info(
        "validated %d rows of source '%s' in %d chunk(s): %d checks, "
        "%d hard failure(s), %d soft failure(s)",
        rows,
        schema.source,
        chunks,
        len(report_checks),
        len(hard),
        len(soft),
    )
    return report


def _split_row_counts(
    table_check: Check, input_splits: Mapping[str, str], split_rows: Mapping[str, int]
) -> list[_Outcome]:
    """One ``row_count`` outcome per input split: at least one row of it."""
    outcomes = []
    for split, file in input_splits.items():
        check = Check(
            id=f"{table_check.rule}:split={split}:{table_check.expectation}",
            rule=table_check.rule,
            expectation=table_check.expectation,
            column=None,
            kwargs={"min_value": 1, "split": split, "file": str(file)},
            severity=table_check.severity,
            scope="split",
        )
        count = int(split_rows.get(split, 0))
        outcomes.append(
            _Outcome(check, evaluated=True, success=count >= 1, observed=count)
        )
    return outcomes


def _chunks(table: Table, chunk_rows: int) -> Iterator[pd.DataFrame]:
    yielded = False
    for chunk in table.iter_chunks(chunk_rows=chunk_rows):
        yielded = True
        yield chunk
    if not yielded:  # a table that yields nothing is an empty table
        yield pd.DataFrame()


def _absorb(outcomes: dict[str, _Outcome], result: Any, examples: int) -> None:
    """Add one chunk's validation result to the running outcomes."""
    for item in result.results:
        check_id = str((item.expectation_config.meta or {}).get("check_id"))
        outcome = outcomes.get(check_id)
        if outcome is None:
            continue
        outcome.evaluated = True
        info = item.exception_info or {}
        if info.get("raised_exception"):
            outcome.success = False
            outcome.error = str(info.get("exception_message") or "evaluation failed")
            continue
        res = item.result or {}
        if not item.success:
            outcome.success = False
        if "element_count" in res:
            outcome.element_count += int(res.get("element_count") or 0)
            outcome.unexpected_count += int(res.get("unexpected_count") or 0)
            outcome.missing_count += int(res.get("missing_count") or 0)
            room = examples - len(outcome.examples)
            if room > 0:
                outcome.examples.extend(
                    _plain(v) for v in (res.get("partial_unexpected_list") or [])[:room]
                )
        if "observed_value" in res and outcome.observed is None:
            outcome.observed = _plain(res["observed_value"])


def _plain(value: Any) -> Any:
    """JSON-friendly version of an example value."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _entry(outcome: _Outcome, columns: Sequence[str]) -> dict[str, Any]:
    check = outcome.check
    entry = {
        "rule": check.rule,
        "expectation": check.expectation,
        "column": check.column,
        "columns": check.pair,
        "severity": check.severity,
        "success": outcome.success and outcome.evaluated,
        "evaluated": outcome.evaluated,
        "element_count": outcome.element_count,
        "unexpected_count": outcome.unexpected_count,
        "missing_count": outcome.missing_count,
        "observed_value": outcome.observed,
        "unexpected_examples": outcome.examples,
        "error": outcome.error,
    }
    if check.scope == "split":
        entry["split"] = check.kwargs["split"]
        entry["file"] = check.kwargs["file"]
    entry["message"] = _message(entry, check, columns)
    return entry


def _message(entry: Mapping[str, Any], check: Check, columns: Sequence[str]) -> str:
    """One line that says which expectation failed, where and how often."""
    where = f"{check.expectation} on column '{check.column}'"
    if entry["columns"]:
        a, b = entry["columns"]
        where = f"{check.expectation} on columns '{a}' and '{b}'"
    if check.column is None and not entry["columns"]:
        where = check.expectation
    if check.scope == "split":
        where = (
            f"{check.expectation}: input file {check.kwargs['file']} "
            f"(split '{check.kwargs['split']}')"
        )
        if entry["success"]:
            return f"{where}: passed"
        return (
            f"{where} has {entry['observed_value']} rows "
            f"(at least {check.kwargs['min_value']} required)"
        )
    if entry["success"]:
        return f"{where}: passed"
    if entry["error"]:
        return f"{where}: could not be evaluated ({entry['error']})"
    if not entry["evaluated"]:
        return f"{where}: not evaluated"
    exp = check.expectation
    if exp == "expect_column_to_exist":
        shown = ", ".join(columns[:12]) + (" ..." if len(columns) > 12 else "")
        return f"{where}: column missing from the raw events (found: {shown})"
    if exp == "expect_column_values_to_be_in_type_list":
        return f"{where}: dtype '{entry['observed_value']}' is not numeric"
    if exp == "expect_table_row_count_to_be_between":
        rows = entry["observed_value"]
        return f"{where}: the table has {rows} rows (at least 1 required)"
    examples = entry["unexpected_examples"]
    shown = f" (e.g. {', '.join(map(str, examples[:3]))})" if examples else ""
    return (
        f"{where}: {entry['unexpected_count']} of {entry['element_count']} rows "
        f"{check.failure}{shown}"
    )


def describe_inputs(inputs: Sequence[str]) -> str:
    """``(file a.csv)`` / ``(files a.csv, b.csv)`` / empty string."""
    if not inputs:
        return ""
    noun = "file" if len(inputs) == 1 else "files"
    return f" ({noun} {', '.join(inputs)})"


def failure_message(report: Mapping[str, Any], severity: str = "hard") -> str:
    """The error message of the failed checks of one severity."""
    failed = [
        c["message"]
        for c in report["checks"]
        if not c["success"] and c["severity"] == severity
    ]
    head = (
        f"validation failed for source '{report['source']}'"
        f"{describe_inputs(report.get('inputs') or ())}"
    )
    return f"{head}: " + "; ".join(failed)


def raise_for_failures(report: Mapping[str, Any]) -> None:
    """Raise :class:`DataValidationError` when a hard check failed.

    Raises:
        DataValidationError: The message names every failed hard check with
            its expectation, column and unexpected-row count, e.g.
            ``validation failed for source 'ali_ccp' (file x.csv):
            expect_column_values_to_be_in_set on column 'click': 1 of 100
            rows outside {0, 1} (e.g. 2)``.
    """
    if report["hard_failures"]:
        raise DataValidationError(failure_message(report, "hard"))


def render_summary(report: Mapping[str, Any]) -> str:
    """A human-readable markdown summary of a validation report."""
    status = "PASSED" if report["success"] else "FAILED"
    lines = [
        f"# Validation of source `{report['source']}`",
        "",
        f"- Result: **{status}** ({report['hard_failures']} hard failure(s), "
        f"{report['soft_failures']} soft warning(s))",
        f"- Rows: {report['rows']} in {report['chunks']} chunk(s)",
        f"- Inputs: {', '.join(report['inputs']) or 'generated (no input file)'}",
        f"- Suite: `{report['suite_name']}` (Great Expectations "
        f"{report['great_expectations_version']}), {len(report['checks'])} checks",
        "",
    ]
    if report.get("split_rows"):
        per_split = ", ".join(f"{k} {v}" for k, v in report["split_rows"].items())
        lines.insert(4, f"- Rows per split: {per_split}")
    failed = [c for c in report["checks"] if not c["success"]]
    if failed:
        lines += ["## Failed checks", ""]
        for c in failed:
            label = "HARD" if c["severity"] == "hard" else "soft"
            lines.append(f"- [{label}] `{c['rule']}`: {c['message']}")
        lines.append("")
    lines += [
        "## All checks",
        "",
        "| status | severity | rule | expectation | column | unexpected | rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in report["checks"]:
        mark = "ok" if c["success"] else ("FAIL" if c["severity"] == "hard" else "warn")
        column = c["column"] or (" >= ".join(c["columns"]) if c["columns"] else "")
        if c.get("split"):
            column = f"split '{c['split']}'"
        lines.append(
            f"| {mark} | {c['severity']} | {c['rule']} | {c['expectation']} | "
            f"{column} | {c['unexpected_count']} | {c['element_count']} |"
        )
    return "\n".join(lines) + "\n"


def table_fingerprint(table: Table, rows: int) -> dict[str, Any]:
    """Identify the validated table (path, size and mtime for a parquet file)."""
    fingerprint: dict[str, Any] = {"rows": int(rows)}
    path = getattr(table, "path", None)
    if isinstance(path, Path) and path.exists():
        stat = path.stat()
        fingerprint.update(
            {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        )
    return fingerprint


def ensure_validated(status: Mapping[str, Any], table: Table) -> None:
    """Refuse to process ``table`` unless ``status`` says it passed validation.

    Raises:
        DataValidationError: The status is a failure, or describes another
            version of the table (validation must be re-run first).
    """
    if not status.get("passed"):
        raise DataValidationError(
            f"raw events of source '{status.get('source')}' did not pass validation"
        )
    expected = status.get("fingerprint") or {}
    path = getattr(table, "path", None)
    if "path" in expected and isinstance(path, Path):
        now = table_fingerprint(table, expected.get("rows", 0))
        if any(now.get(k) != expected.get(k) for k in ("bytes", "mtime_ns")):
            raise DataValidationError(
                f"the validation status describes another version of {path}; "
                "re-run the validation stage first"
            )
