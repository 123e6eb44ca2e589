"""Train/valid/test split of labelled events, out of core.

Three methods, chosen by :class:`~mtl_reco.processing.config.SplitConfig`:

* ``source``: the source ships its own ``split`` column and
  ``use_source_split`` is true. Values must be ``train``/``valid``/``test``.
  When no row is ``valid`` and ``source_valid_share > 0``, that share of the
  ``train`` rows (chosen by the seeded hash below) becomes ``valid``.
* ``time``: ``time_column`` is set. Cutoffs come from the exact distribution
  of that column (one counting pass; memory grows with its number of
  distinct values, not with rows): the earliest rows are train, then valid,
  the latest test. Rows sharing a time value always land in the same split,
  so with few distinct values (days) the shares are only approximately
  ``ratios``; each split gets at least one distinct value when there are
  three or more.
* ``random``: each row's split is decided by a 64-bit hash of ``(seed,
  global row index)`` mapped to [0, 1) and compared with the cumulative
  ratios. The decision depends only on the row's position in the table and
  the seed, never on chunk sizes, so it is deterministic and identical
  whichever way the table is chunked.

:func:`split_table` returns one lazy table per split (each iterates the
input once); :func:`split_report` summarises the written splits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mtl_reco.processing._chunks import non_empty
from mtl_reco.processing.config import SplitConfig, SplitRatios
from mtl_reco.sources.base import SPLITS
from mtl_reco.tables import StreamTable, Table

logger = logging.getLogger(__name__)

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


class SplitError(ValueError):
    """The split cannot be made as configured."""


def hash_uniform(index: np.ndarray, seed: int) -> np.ndarray:
    """Map row indices to reproducible uniforms in [0, 1) (splitmix64 finaliser).

    Args:
        index: Global row indices (any integer array).
        seed: Non-negative seed.
    """
    with np.errstate(over="ignore"):
        z = index.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _codes_from_uniform(u: np.ndarray, ratios: SplitRatios) -> np.ndarray:
    """0 = train, 1 = valid, 2 = test."""
    edges = np.array([ratios.train, ratios.train + ratios.valid])
    return np.searchsorted(edges, u, side="right").astype(np.int8)


@dataclass(frozen=True)
class SplitPlan:
    """How rows are assigned to splits (see the module docstring).

    Attributes:
        method: ``source``, ``time`` or ``random``.
        seed: Seed of the hash.
        ratios: Target shares (random and time splits).
        split_column: The source's split column (dropped from the outputs).
        time_column: Column of a time split.
        cutoffs: ``(valid_start, test_start)`` time values of a time split:
            train is ``t < valid_start``, valid ``valid_start <= t <
            test_start``, test ``t >= test_start``.
        valid_from_train: Share of source ``train`` rows moved to ``valid``.
    """

    method: str
    seed: int
    ratios: SplitRatios
    split_column: str | None = None
    time_column: str | None = None
    cutoffs: tuple[Any, Any] | None = None
    valid_from_train: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (part of the split report)."""
        return {
            "method": self.method,
            "seed": self.seed,
            "ratios": self.ratios.to_dict(),
            "split_column": self.split_column,
            "time_column": self.time_column,
            "cutoffs": None
            if self.cutoffs is None
            else [_plain(c) for c in self.cutoffs],
            "valid_from_train": self.valid_from_train,
        }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def assign_codes(chunk: pd.DataFrame, start: int, plan: SplitPlan) -> np.ndarray:
    """Split codes (0 train, 1 valid, 2 test) of a chunk starting at row ``start``."""
    index = np.arange(start, start + len(chunk), dtype=np.int64)
    if plan.method == "random":
        return _codes_from_uniform(hash_uniform(index, plan.seed), plan.ratios)
    if plan.method == "time":
        assert plan.time_column is not None and plan.cutoffs is not None
        t = chunk[plan.time_column].to_numpy()
        valid_start, test_start = plan.cutoffs
        codes: np.ndarray = (t >= valid_start).astype(np.int8)
        codes += (t >= test_start).astype(np.int8)
        return codes
    assert plan.split_column is not None
    values = chunk[plan.split_column].astype("object").to_numpy()
    codes = np.full(len(chunk), -1, dtype=np.int8)
    for code, name in enumerate(SPLITS):
        codes[values == name] = code
    if (codes < 0).any():
        bad = sorted({str(v) for v in values[codes < 0]})[:5]
        raise SplitError(
            f"column '{plan.split_column}' has {int((codes < 0).sum())} row(s) "
            f"with a value other than {list(SPLITS)} (e.g. {bad})"
        )
    if plan.valid_from_train > 0:
        move = (codes == 0) & (hash_uniform(index, plan.seed) < plan.valid_from_train)
        codes[move] = 1
    return codes


def plan_split(
    table: Table,
    config: SplitConfig,
    *,
    split_column: str | None,
    time_column: str | None,
) -> SplitPlan:
    """Choose the method and, when needed, read what it needs (one column).

    Args:
        table: Labelled events.
        config: Split parameters.
        split_column: The source's split column, if it has one.
        time_column: The source's declared time column (used when
            ``config.time_column`` is ``auto``).

    Raises:
        SplitError: A named time column is missing, or the source split has
            unknown values.
    """
    if config.use_source_split and split_column:
        counts = _value_counts(table, split_column, config.chunk_rows)
        unknown = sorted(str(v) for v in counts.index if v not in SPLITS)
        if unknown:
            raise SplitError(
                f"column '{split_column}' has value(s) {unknown[:5]}; expected "
                f"{list(SPLITS)}"
            )
        move = 0.0
        if int(counts.get("valid", 0)) == 0 and config.source_valid_share > 0:
            move = config.source_valid_share
            logger.info(
                "split: the source has no 'valid' rows; %.0f%% of its 'train' rows "
                "become 'valid' (seeded hash)",
                100 * move,
            )
        return SplitPlan(
            "source", config.seed, config.ratios, split_column, None, None, move
        )
    column = config.time_column
    if column == "auto":
        column = time_column
        if column is None:
            raise SplitError(
                "split.time_column is 'auto' but the source declares no time column"
            )
    if column:
        counts = _value_counts(table, column, config.chunk_rows)
        cutoffs, shares = time_cutoffs(counts, config.ratios)
        logger.info(
            "split by '%s': valid from %s, test from %s (shares %s)",
            column,
            cutoffs[0],
            cutoffs[1],
            ", ".join(f"{s:.3f}" for s in shares),
        )
        return SplitPlan(
            "time", config.seed, config.ratios, split_column, column, cutoffs
        )
    return SplitPlan("random", config.seed, config.ratios, split_column)


def _value_counts(table: Table, column: str, chunk_rows: int) -> pd.Series:
    total: pd.Series | None = None
    for chunk in table.iter_chunks(chunk_rows=chunk_rows):
        if column not in chunk.columns:
            raise SplitError(f"split column '{column}' is not in the labelled events")
        counts = chunk[column].value_counts(dropna=False)
        total = counts if total is None else total.add(counts, fill_value=0)
    if total is None:
        return pd.Series(dtype="int64")
    if total.index.hasnans:
        raise SplitError(f"split column '{column}' has missing values")
    return total.astype("int64").sort_index()


def time_cutoffs(
    counts: pd.Series, ratios: SplitRatios
) -> tuple[tuple[Any, Any], list[float]]:
    """Cutoffs of a time split from the counts of each time value.

    Boundaries fall between distinct values, as close as possible to the
    cumulative ratios, keeping every split non-empty when there are at
    least three distinct values.

    Returns:
        ``(valid_start, test_start)`` and the realised shares.
    """
    values = counts.index.to_numpy()
    n = len(values)
    if n == 0:
        raise SplitError("cannot split an empty table by time")
    cum = np.cumsum(counts.to_numpy()) / counts.sum()
    # boundary b (0..n) = number of distinct values before the cut
    bounds = np.concatenate([[0.0], cum])
    want = (ratios.train, ratios.train + ratios.valid)
    lo1, hi1 = (1, n - 2) if n >= 3 else (min(1, n), n)
    b1 = _nearest(bounds, want[0], lo1, max(lo1, hi1))
    lo2 = b1 + 1 if n >= 3 else b1
    b2 = _nearest(bounds, want[1], lo2, max(lo2, n - 1 if n >= 3 else n))
    sentinel = _after(values[-1])
    valid_start = values[b1] if b1 < n else sentinel
    test_start = values[b2] if b2 < n else sentinel
    shares = [bounds[b1], bounds[b2] - bounds[b1], 1.0 - bounds[b2]]
    target = (ratios.train, ratios.valid, ratios.test)
    if max(abs(s - t) for s, t in zip(shares, target, strict=True)) > 0.05:
        logger.warning(
            "time split: realised shares %s differ from the ratios %s (rows that "
            "share a time value stay together)",
            [round(s, 3) for s in shares],
            list(target),
        )
    return (valid_start, test_start), [float(s) for s in shares]


def _nearest(bounds: np.ndarray, target: float, lo: int, hi: int) -> int:
    candidates = np.arange(lo, hi + 1)
    return int(candidates[np.argmin(np.abs(bounds[candidates] - target))])


def _after(value: Any) -> Any:
    """A value greater than ``value`` (for an empty last split)."""
    if isinstance(value, np.datetime64 | pd.Timestamp):
        return value + np.timedelta64(1, "ns")
    if isinstance(value, np.integer | int):
        return value + 1
    if isinstance(value, np.floating | float):
        return np.nextafter(value, np.inf)
    return value


def split_table(table: Table, plan: SplitPlan) -> dict[str, StreamTable]:
    """One lazy table per split; each pass keeps the rows of its split.

    The source's split column is dropped from the outputs.
    """

    def make(code: int) -> StreamTable:
        def produce(chunk_rows: int) -> Iterator[pd.DataFrame]:
            return non_empty(_select(table, plan, code, chunk_rows))

        return StreamTable(produce)

    return {name: make(code) for code, name in enumerate(SPLITS)}


def _select(
    table: Table, plan: SplitPlan, code: int, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    start = 0
    for chunk in table.iter_chunks(chunk_rows=chunk_rows):
        codes = assign_codes(chunk, start, plan)
        start += len(chunk)
        out = chunk.iloc[np.flatnonzero(codes == code)].reset_index(drop=True)
        if plan.split_column and plan.split_column in out.columns:
            out = out.drop(columns=[plan.split_column])
        yield out


def split_report(
    tables: Mapping[str, Table],
    tasks: Sequence[Mapping[str, Any]],
    plan: Mapping[str, Any] | None = None,
    chunk_rows: int = 500_000,
) -> dict[str, Any]:
    """Rows, shares and label rates of each written split.

    Args:
        tables: ``{"train": ..., "valid": ..., "test": ...}``.
        tasks: Task entries (``name``, ``type``) of the task spec.
        plan: The split plan description, copied into the report.
        chunk_rows: Rows per chunk of the counting pass.
    """
    names = [t["name"] for t in tasks]
    time_column = (plan or {}).get("time_column")
    out: dict[str, Any] = {"plan": plan, "splits": {}}
    total = 0
    for split, table in tables.items():
        cols = names + ([time_column] if time_column else [])
        rows = 0
        sums = dict.fromkeys(names, 0.0)
        t_min: Any = None
        t_max: Any = None
        for chunk in table.iter_chunks(columns=cols, chunk_rows=chunk_rows):
            rows += len(chunk)
            for name in names:
                sums[name] += float(chunk[name].sum())
            if time_column and len(chunk):
                lo, hi = chunk[time_column].min(), chunk[time_column].max()
                t_min = lo if t_min is None else min(t_min, lo)
                t_max = hi if t_max is None else max(t_max, hi)
        total += rows
        entry: dict[str, Any] = {"rows": rows}
        for task in tasks:
            key = "positive_rate" if task.get("type") == "classification" else "mean"
            entry[f"{task['name']}_{key}"] = sums[task["name"]] / rows if rows else None
        if time_column:
            entry["time_range"] = [_plain(t_min), _plain(t_max)]
        out["splits"][split] = entry
    for entry in out["splits"].values():
        entry["share"] = entry["rows"] / total if total else None
    out["rows"] = total
    logger.info(
        "split: %s",
        ", ".join(
            f"{name}={entry['rows']} ({(entry['share'] or 0):.1%})"
            for name, entry in out["splits"].items()
        ),
    )
    for name, entry in out["splits"].items():
        if entry["rows"] == 0:
            logger.warning("split '%s' is empty", name)
    return out
