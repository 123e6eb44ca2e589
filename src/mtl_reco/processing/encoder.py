"""Feature encoder: vocabularies for sparse columns, scalers for dense ones.

:meth:`FeatureEncoder.fit` reads the TRAIN split once, chunk by chunk, and
learns (memory grows with distinct values, not with rows):

* **sparse** columns: value counts; values seen at least ``min_count`` times
  (and among the ``max_vocab_size`` most frequent, when capped) get ids
  ``1..V`` in decreasing frequency (ties by value). Id ``0`` is shared by
  missing values, rare values and values never seen in train, so the
  cardinality written to the feature schema is ``V + 1``;
* **dense** columns, one scaling each (a default plus per-column overrides):

  - ``standard``: ``(x - mean) / std``;
  - ``minmax``: ``(x - min) / (max - min)``, clipped to [0, 1] when
    ``clip_minmax`` (valid/test values outside the train range);
  - ``log1p``: ``sign(x) * log1p(|x|)``, then standardised with the mean and
    std of the transformed train values (for heavy-tailed counts);
  - ``none``: unchanged.

  Statistics ignore non-finite values. A constant column (std 0 or max ==
  min) scales to 0. **NaN handling:** a NaN or infinite input is written as
  ``nan_fill`` *after* scaling (default 0.0 = the train mean for
  ``standard``/``log1p``, the train minimum for ``minmax``); fit counts such
  values per column and :func:`encoding_report` counts them per split.

:meth:`FeatureEncoder.transform` turns one chunk into model input: sparse
``int32`` ids, dense ``float32``, task labels ``float32``, extras unchanged.
It is a pure function of the chunk, so scoring reuses it on any data.
:meth:`FeatureEncoder.to_dict` / :meth:`FeatureEncoder.from_dict` give the
``feature_encoder`` JSON artefact; :meth:`FeatureEncoder.feature_schema`
gives the :class:`~mtl_reco.schema.FeatureSchema`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mtl_reco.processing._chunks import non_empty
from mtl_reco.processing.config import EmbeddingRule, EncodingConfig
from mtl_reco.schema import (
    DenseFeature,
    FeatureSchema,
    Funnel,
    SparseFeature,
    TaskSpec,
)
from mtl_reco.tables import StreamTable, Table

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


class EncoderError(ValueError):
    """The encoder cannot be fitted or applied; the message says why."""


# -- value kinds ---------------------------------------------------------------


def _value_kind(series: pd.Series) -> str:
    """``int``, ``float`` or ``str``: how sparse values are compared."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    return "str"


def _as_kind(series: pd.Series, kind: str) -> pd.Series:
    """Bring a chunk's column to the kind the vocabulary was learnt with."""
    if kind == "int":
        if pd.api.types.is_bool_dtype(series.dtype):
            return series.astype("Int64")
        if pd.api.types.is_integer_dtype(series.dtype):
            return series
        return pd.to_numeric(series, errors="coerce")
    if kind == "float":
        if pd.api.types.is_numeric_dtype(series.dtype):
            return series.astype("float64")
        return pd.to_numeric(series, errors="coerce")
    if pd.api.types.is_string_dtype(series.dtype) and not pd.api.types.is_object_dtype(
        series.dtype
    ):
        return series
    return series.astype("str").where(series.notna())


def _json_value(value: Any, kind: str) -> Any:
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return str(value)


# -- sparse vocabulary -----------------------------------------------------------


@dataclass
class SparseVocabulary:
    """Ids of one sparse column (id ``i`` is ``values[i - 1]``; 0 is reserved).

    Attributes:
        name: Column name.
        kind: ``int``, ``float`` or ``str``.
        values: Known values, most frequent first.
        min_count: Threshold used at fit time.
        stats: Fit-time counts (train rows, missing, rare, distinct values).
    """

    name: str
    kind: str
    values: list[Any]
    min_count: int = 1
    stats: dict[str, int] = field(default_factory=dict)
    _index: pd.Index | None = field(default=None, repr=False, compare=False)

    @property
    def cardinality(self) -> int:
        """Number of ids including the reserved id 0."""
        return len(self.values) + 1

    def index(self) -> pd.Index:
        """Hash index of the values (built once)."""
        if self._index is None:
            if self.kind == "int":
                self._index = pd.Index(np.asarray(self.values, dtype=np.int64))
            elif self.kind == "float":
                self._index = pd.Index(np.asarray(self.values, dtype=np.float64))
            else:
                self._index = pd.Index(self.values, dtype="object")
        return self._index

    def encode(self, series: pd.Series) -> np.ndarray:
        """``int32`` ids of a column (0 for missing, rare and unseen values)."""
        values = _as_kind(series, self.kind)
        if self.kind == "str":
            values = values.astype("object")
        ids: np.ndarray = self.index().get_indexer(values) + 1
        return ids.astype(np.int32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "kind": self.kind,
            "cardinality": self.cardinality,
            "min_count": self.min_count,
            "stats": dict(self.stats),
            "values": list(self.values),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SparseVocabulary:
        """Inverse of :meth:`to_dict`."""
        kind = str(raw["kind"])
        return cls(
            name=str(raw["name"]),
            kind=kind,
            values=[_json_value(v, kind) for v in raw["values"]],
            min_count=int(raw.get("min_count", 1)),
            stats={k: int(v) for k, v in (raw.get("stats") or {}).items()},
        )


class _ValueCounter:
    """Streaming value counts of one column."""

    def __init__(self) -> None:
        self.kind: str | None = None
        self.counts: pd.Series | None = None
        self.rows = 0
        self.missing = 0

    def update(self, series: pd.Series) -> None:
        if self.kind is None:
            self.kind = _value_kind(series)
        values = _as_kind(series, self.kind)
        self.rows += len(values)
        self.missing += int(values.isna().sum())
        counts = values.value_counts(dropna=True)
        if self.kind == "int":
            counts.index = counts.index.astype(np.int64)
        elif self.kind == "str":
            counts.index = counts.index.astype("object")
        self.counts = (
            counts if self.counts is None else self.counts.add(counts, fill_value=0)
        )

    def vocabulary(
        self, name: str, min_count: int, max_size: int | None
    ) -> SparseVocabulary:
        kind = self.kind or "int"
        counts = (
            self.counts if self.counts is not None else pd.Series(dtype="int64")
        ).astype("int64")
        # decreasing count, ties broken by value: deterministic ids
        order = counts.sort_index(kind="stable").sort_values(
            ascending=False, kind="stable"
        )
        kept = order[order >= min_count]
        if max_size is not None:
            kept = kept.iloc[:max_size]
        rare_rows = int(order.sum() - kept.sum())
        return SparseVocabulary(
            name=name,
            kind=kind,
            values=[_json_value(v, kind) for v in kept.index],
            min_count=min_count,
            stats={
                "train_rows": self.rows,
                "missing_rows": self.missing,
                "distinct_values": len(order),
                "kept_values": len(kept),
                "rare_rows": rare_rows,
            },
        )


# -- dense scaling ---------------------------------------------------------------


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)`` (defined for every real ``x``)."""
    out: np.ndarray = np.sign(x) * np.log1p(np.abs(x))
    return out


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations, merged chunk by chunk (Chan)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def update(self, x: np.ndarray) -> None:
        if len(x) == 0:
            return
        n_b = len(x)
        mean_b = float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else 0.0


@dataclass
class DenseScaler:
    """Scaling of one dense column.

    Attributes:
        name: Column name.
        method: ``standard``, ``minmax``, ``log1p`` or ``none``.
        params: ``mean``/``std`` (standard, log1p) or ``min``/``max`` (minmax).
        stats: Fit-time counts (finite and non-finite train values).
    """

    name: str
    method: str
    params: dict[str, float] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)

    def scale(
        self, series: pd.Series, nan_fill: float, clip_minmax: bool
    ) -> np.ndarray:
        """Scaled ``float32`` values; non-finite inputs become ``nan_fill``."""
        x = pd.to_numeric(series, errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        finite = np.isfinite(x)
        with np.errstate(invalid="ignore", over="ignore"):
            if self.method == "standard":
                y = (x - self.params["mean"]) / _nonzero(self.params["std"])
            elif self.method == "log1p":
                y = (signed_log1p(x) - self.params["mean"]) / _nonzero(
                    self.params["std"]
                )
            elif self.method == "minmax":
                lo, hi = self.params["min"], self.params["max"]
                y = (x - lo) / _nonzero(hi - lo)
                if clip_minmax:
                    y = np.clip(y, 0.0, 1.0)
            else:
                y = x.copy()
        y[~finite] = nan_fill
        out: np.ndarray = y.astype(np.float32)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "method": self.method,
            "params": dict(self.params),
            "stats": dict(self.stats),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DenseScaler:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(raw["name"]),
            method=str(raw["method"]),
            params={k: float(v) for k, v in (raw.get("params") or {}).items()},
            stats={k: int(v) for k, v in (raw.get("stats") or {}).items()},
        )


def _nonzero(value: float) -> float:
    return value if value != 0 and math.isfinite(value) else 1.0


class _DenseStats:
    """Streaming statistics of one dense column for every scaling method."""

    def __init__(self) -> None:
        self.raw = _Moments()
        self.log = _Moments()
        self.lo = math.inf
        self.hi = -math.inf
        self.nonfinite = 0

    def update(self, series: pd.Series) -> None:
        x = pd.to_numeric(series, errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        finite = np.isfinite(x)
        self.nonfinite += int((~finite).sum())
        x = x[finite]
        if len(x):
            self.raw.update(x)
            self.log.update(signed_log1p(x))
            self.lo = min(self.lo, float(x.min()))
            self.hi = max(self.hi, float(x.max()))

    def scaler(self, name: str, method: str) -> DenseScaler:
        if method == "standard":
            params = {"mean": self.raw.mean, "std": self.raw.std}
        elif method == "log1p":
            params = {"mean": self.log.mean, "std": self.log.std}
        elif method == "minmax":
            empty = self.raw.n == 0
            params = {
                "min": 0.0 if empty else self.lo,
                "max": 0.0 if empty else self.hi,
            }
        elif method == "none":
            params = {}
        else:
            raise EncoderError(f"dense column '{name}': unknown scaling '{method}'")
        return DenseScaler(
            name,
            method,
            params,
            {"train_finite": self.raw.n, "train_nonfinite": self.nonfinite},
        )


# -- the encoder -----------------------------------------------------------------


class FeatureEncoder:
    """Fitted encoding of sparse and dense columns (see the module docstring).

    Args:
        sparse: One vocabulary per sparse column, in model-input order.
        dense: One scaler per dense column, in model-input order.
        labels: Task label columns passed through as ``float32`` when present.
        extras: Passthrough columns kept unchanged when present.
        nan_fill: Value written for non-finite dense inputs (after scaling).
        clip_minmax: Clip min-max scaled values to [0, 1].
        embedding: Rule for the suggested embedding size.
        fitted_rows: Train rows seen by :meth:`fit`.
    """

    def __init__(
        self,
        sparse: Sequence[SparseVocabulary],
        dense: Sequence[DenseScaler],
        *,
        labels: Sequence[str] = (),
        extras: Sequence[str] = (),
        nan_fill: float = 0.0,
        clip_minmax: bool = True,
        embedding: EmbeddingRule | None = None,
        fitted_rows: int = 0,
    ) -> None:
        self.sparse = list(sparse)
        self.dense = list(dense)
        self.labels = list(labels)
        self.extras = list(extras)
        self.nan_fill = float(nan_fill)
        self.clip_minmax = bool(clip_minmax)
        self.embedding = embedding or EmbeddingRule()
        self.fitted_rows = int(fitted_rows)

    @property
    def sparse_names(self) -> list[str]:
        """Sparse columns in model-input order."""
        return [v.name for v in self.sparse]

    @property
    def dense_names(self) -> list[str]:
        """Dense columns in model-input order."""
        return [s.name for s in self.dense]

    @property
    def output_columns(self) -> list[str]:
        """Columns of an encoded table with labels and extras."""
        return [*self.sparse_names, *self.dense_names, *self.labels, *self.extras]

    @classmethod
    def fit(
        cls,
        table: Table,
        *,
        sparse: Sequence[str],
        dense: Sequence[str],
        config: EncodingConfig,
        labels: Sequence[str] = (),
        extras: Sequence[str] = (),
    ) -> FeatureEncoder:
        """Fit on ``table`` (the train split only) in one streaming pass.

        Raises:
            EncoderError: A feature column is missing from the table.
        """
        counters = {c: _ValueCounter() for c in sparse}
        stats = {c: _DenseStats() for c in dense}
        rows = 0
        columns = [*sparse, *dense]
        for chunk in table.iter_chunks(chunk_rows=config.chunk_rows):
            missing = [c for c in columns if c not in chunk.columns]
            if missing:
                raise EncoderError(f"feature column(s) {missing} missing from train")
            rows += len(chunk)
            for col, counter in counters.items():
                counter.update(chunk[col])
            for col, stat in stats.items():
                stat.update(chunk[col])
        if rows == 0:
            raise EncoderError("cannot fit the feature encoder on an empty train split")
        vocabularies = [
            counters[c].vocabulary(c, config.min_count_for(c), config.max_vocab_size)
            for c in sparse
        ]
        scalers = [stats[c].scaler(c, config.scaling_for(c)) for c in dense]
        encoder = cls(
            vocabularies,
            scalers,
            labels=labels,
            extras=extras,
            nan_fill=config.nan_fill,
            clip_minmax=config.clip_minmax,
            embedding=config.embedding,
            fitted_rows=rows,
        )
        for scaler in scalers:
            if scaler.stats.get("train_nonfinite"):
                logger.warning(
                    "dense column '%s': %d non-finite train value(s) will be "
                    "written as %s",
                    scaler.name,
                    scaler.stats["train_nonfinite"],
                    config.nan_fill,
                )
        logger.info(
            "feature encoder fitted on %d train rows: %d sparse columns "
            "(total cardinality %d), %d dense columns",
            rows,
            len(vocabularies),
            sum(v.cardinality for v in vocabularies),
            len(scalers),
        )
        return encoder

    def transform(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """Encode one chunk: ``int32`` ids, ``float32`` dense and labels, extras.

        Label and extra columns absent from the chunk (scoring data) are left
        out; a missing feature column raises :class:`EncoderError`.
        """
        missing = [c for c in (*self.sparse_names, *self.dense_names) if c not in chunk]
        if missing:
            raise EncoderError(f"feature column(s) {missing} missing from the data")
        out: dict[str, Any] = {}
        for vocab in self.sparse:
            out[vocab.name] = vocab.encode(chunk[vocab.name])
        for scaler in self.dense:
            out[scaler.name] = scaler.scale(
                chunk[scaler.name], self.nan_fill, self.clip_minmax
            )
        for col in self.labels:
            if col in chunk:
                out[col] = chunk[col].to_numpy(dtype=np.float32, na_value=np.nan)
        frame = pd.DataFrame(out)
        for col in self.extras:
            if col in chunk:
                frame[col] = chunk[col].to_numpy()
        return frame

    def transform_table(self, table: Table) -> StreamTable:
        """Lazily encoded table, chunk by chunk."""

        def produce(chunk_rows: int) -> Iterator[pd.DataFrame]:
            return non_empty(
                self.transform(chunk)
                for chunk in table.iter_chunks(chunk_rows=chunk_rows)
            )

        return StreamTable(produce)

    def feature_schema(
        self,
        tasks: Sequence[TaskSpec | Mapping[str, Any]],
        funnel: Funnel | Mapping[str, str] | None = None,
        extras: Sequence[str] | None = None,
    ) -> FeatureSchema:
        """The feature schema of the encoded tables.

        Args:
            tasks: Task specs (or ``{"name", "type"}`` mappings).
            funnel: Click and conversion task names, if any.
            extras: Passthrough columns (default: the encoder's extras).
        """
        specs = tuple(
            t
            if isinstance(t, TaskSpec)
            else TaskSpec(str(t["name"]), t.get("type", "classification"))
            for t in tasks
        )
        if isinstance(funnel, Mapping):
            funnel = Funnel(str(funnel["click"]), str(funnel["conversion"]))
        return FeatureSchema(
            sparse=tuple(
                SparseFeature(
                    v.name, v.cardinality, self.embedding.dim_for(v.cardinality)
                )
                for v in self.sparse
            ),
            dense=tuple(DenseFeature(s.name) for s in self.dense),
            tasks=specs,
            funnel=funnel,
            extras=tuple(self.extras if extras is None else extras),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``feature_encoder`` JSON artefact."""
        return {
            "format_version": FORMAT_VERSION,
            "fitted_rows": self.fitted_rows,
            "nan_fill": self.nan_fill,
            "clip_minmax": self.clip_minmax,
            "embedding": self.embedding.to_dict(),
            "labels": list(self.labels),
            "extras": list(self.extras),
            "dense": [s.to_dict() for s in self.dense],
            "sparse": [v.to_dict() for v in self.sparse],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FeatureEncoder:
        """Inverse of :meth:`to_dict`."""
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise EncoderError(f"unsupported feature encoder format_version {version}")
        return cls(
            [SparseVocabulary.from_dict(v) for v in raw["sparse"]],
            [DenseScaler.from_dict(s) for s in raw["dense"]],
            labels=raw.get("labels", ()),
            extras=raw.get("extras", ()),
            nan_fill=float(raw.get("nan_fill", 0.0)),
            clip_minmax=bool(raw.get("clip_minmax", True)),
            embedding=EmbeddingRule.from_dict(raw.get("embedding")),
            fitted_rows=int(raw.get("fitted_rows", 0)),
        )


def encoder_digest(artefact: Mapping[str, Any]) -> str:
    """Content hash of a ``feature_encoder`` artefact (SHA-256, hex, 16 chars).

    Two artefacts with the same vocabularies, scalings and settings hash the
    same wherever they were saved. A model records the digest of the encoder
    it was trained with, so nothing scores or evaluates it through another.
    """
    text = json.dumps(artefact, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_encoder_mismatch(
    provenance: Mapping[str, Any], feature_encoder: Mapping[str, Any]
) -> str | None:
    """Why a trained model must not read data made by ``feature_encoder``.

    Args:
        provenance: What the model recorded when it was trained or exported:
            its ``model_spec``, or the ``provenance`` of its ONNX description
            (``encoder``: the digest; ``experiment``: its name).
        feature_encoder: The current ``feature_encoder`` artefact.

    Returns:
        ``None`` when the model was trained with this very encoder (or
        predates the record). Otherwise one line: the data folder's encoder
        was refitted (e.g. ``data_processing`` ran on new data) after the
        model was trained, so its ids mean other values than the model learnt.
    """
    recorded = provenance.get("encoder")
    if not recorded or recorded == encoder_digest(feature_encoder):
        return None
    experiment = provenance.get("experiment") or "<experiment>"
    return (
        f"the model was trained with feature encoder {recorded}, but the current "
        f"feature_encoder is {encoder_digest(feature_encoder)} (data processing "
        "ran again since); retrain it on the current data "
        f"(`kedro run --pipelines=train_{experiment}`)"
    )


def encoding_report(
    encoder: FeatureEncoder,
    raw_splits: Mapping[str, Table],
    encoded_splits: Mapping[str, Table],
    chunk_rows: int = 500_000,
) -> dict[str, Any]:
    """Per split: share of id 0 per sparse column, non-finite dense inputs.

    Id 0 covers missing, rare (below ``min_count``) and unseen values; the
    non-finite counts are the dense inputs written as ``nan_fill``.
    """
    report: dict[str, Any] = {
        "fitted_rows": encoder.fitted_rows,
        "sparse": {
            v.name: {"cardinality": v.cardinality, **v.stats} for v in encoder.sparse
        },
        "dense": {
            s.name: {"method": s.method, **s.params, **s.stats} for s in encoder.dense
        },
        "splits": {},
    }
    for split, table in encoded_splits.items():
        rows = 0
        zeros = dict.fromkeys(encoder.sparse_names, 0)
        for chunk in table.iter_chunks(
            columns=encoder.sparse_names, chunk_rows=chunk_rows
        ):
            rows += len(chunk)
            for col in encoder.sparse_names:
                zeros[col] += int((chunk[col].to_numpy() == 0).sum())
        nonfinite = dict.fromkeys(encoder.dense_names, 0)
        if split in raw_splits and encoder.dense_names:
            for chunk in raw_splits[split].iter_chunks(
                columns=encoder.dense_names, chunk_rows=chunk_rows
            ):
                for col in encoder.dense_names:
                    x = pd.to_numeric(chunk[col], errors="coerce").to_numpy(
                        dtype=np.float64, na_value=np.nan
                    )
                    nonfinite[col] += int((~np.isfinite(x)).sum())
        report["splits"][split] = {
            "rows": rows,
            "id0_share": {c: (z / rows if rows else None) for c, z in zeros.items()},
            "dense_nonfinite_filled": nonfinite,
        }
    for split, entry in report["splits"].items():
        worst = max(entry["id0_share"].items(), key=lambda kv: kv[1] or 0, default=None)
        filled = sum(entry["dense_nonfinite_filled"].values())
        logger.info(
            "encoded %s: %d rows; highest id-0 share %s; %d non-finite dense "
            "value(s) filled",
            split,
            entry["rows"],
            f"{worst[0]}={worst[1]:.3f}" if worst and worst[1] is not None else "n/a",
            filled,
        )
    return report
