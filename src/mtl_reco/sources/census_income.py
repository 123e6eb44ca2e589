"""UCI Census-Income (KDD) raw files, with the MMoE paper's task groups.

The raw ``census-income.data`` / ``.test`` files (optionally gzip-compressed)
have no header and 42 comma+space separated fields in the order of
``census-income.names``; :data:`COLUMNS` gives them snake_case names. They are
read as text with ``keep_default_na=False`` so that the real category ``NA``
of ``hispanic_origin`` stays a category; the literal ``?`` (the migration
fields, state of previous residence, parents' countries of birth) becomes a
missing value. A line with a field count other than 42 (or an empty field)
raises :class:`~mtl_reco.sources.base.SourceError` naming the file and line,
and so does an income value other than ``"- 50000."``, ``"50000+."`` or ``?``
(the message names the value and the accepted ones).

Columns produced:

* labels (``int8``; ``<NA>`` in a nullable ``Int8`` chunk when the source
  value is ``?``):
  ``income_50k`` = income is ``"50000+."``; ``never_married`` = marital stat
  is ``"Never married"``; with ``task_group="education_marital"`` also
  ``education_college`` = education in :data:`COLLEGE_OR_MORE`. The label
  source columns (income, marital stat, and education when it is a label)
  are not features.
* sparse: every categorical column as a string, including the coded numeric
  ones (industry and occupation recodes, own business or self employed,
  veterans benefits, year).
* dense (``float64``): :data:`DENSE`.
* extra: ``instance_weight`` (``float64``), the census sampling weight: kept
  for weighted statistics, never a feature.
* ``split`` only when several files are combined with ``paths``.

"At least college" is read as *any post-secondary education*: "Some college
but no degree", both associates degrees, bachelors, masters, professional
school and doctorate (33.6 % of the training file). The high-school levels
and "Children" count as 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Self

import numpy as np
import pandas as pd
from pydantic import model_validator

from mtl_reco.sources._common import (
    InputPath,
    SourceTable,
    add_split,
    check_chunk_rows,
    iter_csv_chunks,
    resolve_split_paths,
    to_float,
)
from mtl_reco.sources.base import SPLIT_COLUMN, RawSchema, SourceError, TaskDefinition
from mtl_reco.typed_config import ConfigError, StrictConfig

SOURCE_NAME = "census_income"

COLUMNS = (
    "age",
    "class_of_worker",
    "detailed_industry_recode",
    "detailed_occupation_recode",
    "education",
    "wage_per_hour",
    "enroll_in_edu_inst_last_wk",
    "marital_stat",
    "major_industry_code",
    "major_occupation_code",
    "race",
    "hispanic_origin",
    "sex",
    "member_of_a_labor_union",
    "reason_for_unemployment",
    "full_or_part_time_employment_stat",
    "capital_gains",
    "capital_losses",
    "dividends_from_stocks",
    "tax_filer_stat",
    "region_of_previous_residence",
    "state_of_previous_residence",
    "detailed_household_and_family_stat",
    "detailed_household_summary_in_household",
    "instance_weight",
    "migration_code_change_in_msa",
    "migration_code_change_in_reg",
    "migration_code_move_within_reg",
    "live_in_this_house_1_year_ago",
    "migration_prev_res_in_sunbelt",
    "num_persons_worked_for_employer",
    "family_members_under_18",
    "country_of_birth_father",
    "country_of_birth_mother",
    "country_of_birth_self",
    "citizenship",
    "own_business_or_self_employed",
    "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits",
    "weeks_worked_in_year",
    "year",
    "income",
)
"""The 42 raw columns, in file order (snake_case of ``census-income.names``)."""

DENSE = (
    "age",
    "wage_per_hour",
    "capital_gains",
    "capital_losses",
    "dividends_from_stocks",
    "num_persons_worked_for_employer",
    "weeks_worked_in_year",
)
WEIGHT = "instance_weight"
MISSING = "?"

INCOME_POSITIVE, INCOME_NEGATIVE = "50000+.", "- 50000."
NEVER_MARRIED = "Never married"
COLLEGE_OR_MORE = frozenset(
    {
        "Some college but no degree",
        "Associates degree-occup /vocational",
        "Associates degree-academic program",
        "Bachelors degree(BA AB BS)",
        "Masters degree(MA MS MEng MEd MSW MBA)",
        "Prof school degree (MD DDS DVM LLB JD)",
        "Doctorate degree(PhD EdD)",
    }
)
"""Education values that count as "at least college" (post-secondary)."""

TaskGroup = Literal["income_marital", "education_marital"]


class CensusIncomeOptions(StrictConfig):
    """Options of the ``census_income`` source.

    Attributes:
        path: One raw file (``.data``/``.test``, optionally ``.gz``); no split
            column.
        paths: Several raw files by split, e.g. ``{"train": ..., "test": ...}``;
            rows get a ``split`` column naming their file's split. Give
            ``path`` or ``paths``, not both.
        task_group: ``income_marital`` (MMoE group 1: income > 50K, never
            married) or ``education_marital`` (group 2: at least college,
            never married).
    """

    path: str | None = None
    paths: dict[str, str] | None = None
    task_group: TaskGroup = "income_marital"

    @model_validator(mode="after")
    def _one_way_to_name_files(self) -> Self:
        """Reject giving both ``path`` and ``paths``."""
        if self.path is not None and self.paths:
            raise ConfigError("CensusIncomeOptions: give `path` or `paths`, not both")
        return self


def census_schema(
    task_group: TaskGroup = "income_marital", with_split: bool = False
) -> RawSchema:
    """Raw schema of the census source for a task group."""
    removed = {"income", "marital_stat", WEIGHT, *DENSE}
    if task_group == "education_marital":
        removed.add("education")
        labels: tuple[str, ...] = ("income_50k", "never_married", "education_college")
        tasks = (
            TaskDefinition("education", "education_college"),
            TaskDefinition("marital", "never_married"),
        )
    else:
        labels = ("income_50k", "never_married")
        tasks = (
            TaskDefinition("income", "income_50k"),
            TaskDefinition("marital", "never_married"),
        )
    return RawSchema(
        source=SOURCE_NAME,
        labels=labels,
        sparse=tuple(c for c in COLUMNS if c not in removed),
        dense=DENSE,
        extras=(WEIGHT,),
        split_column=SPLIT_COLUMN if with_split else None,
        funnel=None,
        default_tasks=tasks,
    )


def read_census_income(
    options: CensusIncomeOptions,
) -> tuple[RawSchema, SourceTable]:
    """Check the files and return the schema with a lazy chunked table.

    The table's ``files`` list ``(split or None, path)`` in reading order.
    """
    split_paths = {k: v for k, v in (options.paths or {}).items()}
    files = resolve_split_paths(SOURCE_NAME, options.path, split_paths)
    schema = census_schema(options.task_group, with_split=files[0][0] is not None)

    def produce(chunk_rows: int) -> Iterator[pd.DataFrame]:
        chunk_rows = check_chunk_rows(chunk_rows)
        for split, path in files:
            yield from _iter_file(path, split, schema, chunk_rows)

    return schema, SourceTable(produce, schema.columns, files=files)


def _iter_file(
    path: InputPath, split: str | None, schema: RawSchema, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    first_line = 1
    empty = True
    for raw in iter_csv_chunks(
        path,
        SOURCE_NAME,
        chunk_rows,
        header=None,
        names=list(COLUMNS),
        index_col=False,
        skipinitialspace=True,
        keep_default_na=False,
        na_values=[""],
        dtype=str,
        quoting=3,  # csv.QUOTE_NONE: quotes are data
    ):
        _check_complete(raw, path, first_line)
        _check_income(raw, path, first_line)
        empty = False
        yield _convert(raw, split, schema, path)
        first_line += len(raw)
    if empty:
        blank = pd.DataFrame({c: pd.Series([], dtype="str") for c in COLUMNS})
        yield _convert(blank, split, schema, path)


def _check_complete(raw: pd.DataFrame, path: InputPath, first_line: int) -> None:
    """A short line (or an empty field) shows up as a missing value."""
    missing = raw.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing.any(axis=1))[0])
        col = int(np.flatnonzero(missing[row])[0])
        raise SourceError(
            f"{SOURCE_NAME}: {path} line {first_line + row}: expected "
            f"{len(COLUMNS)} fields, found fewer (or an empty field; "
            f"first missing: {COLUMNS[col]!r})"
        )


def _check_income(raw: pd.DataFrame, path: InputPath, first_line: int) -> None:
    """An income value that is neither class nor ``?`` is an error, not a guess."""
    income = raw["income"]
    bad = ~income.isin([INCOME_NEGATIVE, INCOME_POSITIVE, MISSING]).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise SourceError(
            f"{SOURCE_NAME}: {path} line {first_line + row}: unknown income value "
            f"{income.iloc[row]!r} (expected {INCOME_NEGATIVE!r} or "
            f"{INCOME_POSITIVE!r})"
        )


def _label(values: pd.Series, positive: pd.Series, known: pd.Series) -> pd.Series:
    if bool(known.all()):
        return positive.astype(np.int8)
    return positive.astype("Int8").mask(~known)


def _convert(
    raw: pd.DataFrame, split: str | None, schema: RawSchema, path: InputPath
) -> pd.DataFrame:
    where = str(path)
    income = raw["income"]
    marital = raw["marital_stat"]
    education = raw["education"]
    labels = {
        "income_50k": _label(
            income,
            income == INCOME_POSITIVE,
            income.isin([INCOME_POSITIVE, INCOME_NEGATIVE]),
        ),
        "never_married": _label(marital, marital == NEVER_MARRIED, marital != MISSING),
        "education_college": _label(
            education, education.isin(COLLEGE_OR_MORE), education != MISSING
        ),
    }
    out: dict[str, pd.Series] = {name: labels[name] for name in schema.labels}
    for col in schema.sparse:
        values = raw[col]
        out[col] = values.mask(values == MISSING)
    for col in (*schema.dense, WEIGHT):
        out[col] = to_float(raw[col].mask(raw[col] == MISSING), where)
    frame = pd.DataFrame(out)
    return add_split(frame, split)
