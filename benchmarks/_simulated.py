"""The data chain of the ``data_processing`` pipeline without Kedro, and the
project's default parameters, for the benchmarks.

:func:`encode` chains the library functions the pipeline's nodes call
(labels, split, encoder fitted on the train split, tensor tables; validation
changes no row and is left out); :func:`prepare` runs it on the ``simulated``
source with the parameters of ``conf/base/parameters_*.yml`` (read as plain
YAML), so a benchmark trains with the defaults of ``kedro run``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import yaml

import harness
from mtl_reco.experiment.loading import load_tensor_table
from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.data import TensorTable
from mtl_reco.processing.config import EncodingConfig, LabelsConfig, SplitConfig
from mtl_reco.processing.encoder import FeatureEncoder
from mtl_reco.processing.labels import label_table, plan_labels
from mtl_reco.processing.split import plan_split, split_table
from mtl_reco.schema import FeatureSchema
from mtl_reco.sources.registry import read_source
from mtl_reco.tables import FrameTable

ARCHS = ("shared_bottom", "esmm", "mmoe", "ple", "aitm")
SPLITS = ("train", "valid", "test")


def project_parameters() -> dict[str, Any]:
    """``conf/base/parameters_{data_processing,training}.yml``, merged."""
    merged: dict[str, Any] = {}
    for part in ("data_processing", "training"):
        path = harness.PROJECT_ROOT / "conf" / "base" / f"parameters_{part}.yml"
        merged.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return merged


def model_params(arch: str, params: dict[str, Any]) -> dict[str, Any]:
    """``<arch>.model.params`` of the experiment named like the architecture."""
    block = params[arch]["model"]
    if block["name"] != arch:
        raise ValueError(f"experiment {arch!r} builds {block['name']!r}, not {arch!r}")
    return dict(block.get("params") or {})


def trainer_config(params: dict[str, Any], **overrides: Any) -> TrainerConfig:
    """The ``trainer`` block on the CPU, without checkpoint or progress bar."""
    block = {**params["trainer"], "device": "cpu", "checkpoint_dir": None}
    block.update(progress=False, resume=False, **overrides)
    return TrainerConfig.from_dict(block)


@dataclass
class FunnelData:
    """Encoded splits (true propensities as extras) and the split method."""

    schema: FeatureSchema
    tables: dict[str, TensorTable]
    method: str
    seconds: float

    def describe(self) -> dict[str, Any]:
        """Rows, clicks and purchases per split."""
        out = {}
        for name, table in self.tables.items():
            ctr, ctcvr = (table.labels_dict()[t] for t in ("ctr", "ctcvr"))
            out[name] = {"rows": len(table), "clicks": int(ctr.sum()),
                         "purchases": int(ctcvr.sum())}  # fmt: skip
        return out


def encode(
    raw_schema: Any,
    raw: Any,
    labels: LabelsConfig,
    split: SplitConfig,
    encoding: EncodingConfig,
    splits: tuple[str, ...] = SPLITS,
) -> FunnelData:
    """Label, split and encode a raw table as the pipeline does."""
    start = time.perf_counter()
    plan = plan_labels(raw_schema, labels)
    labelled = FrameTable(label_table(raw, plan).to_pandas())  # materialised once
    cols = {"split_column": plan.split_column, "time_column": plan.time_column}
    split_plan = plan_split(labelled, split, **cols)
    parts = split_table(labelled, split_plan)
    parts = {k: FrameTable(v.to_pandas()) for k, v in parts.items()}
    encoder = FeatureEncoder.fit(
        parts["train"], sparse=plan.sparse, dense=plan.dense, config=encoding,
        labels=plan.task_names, extras=plan.extras,
    )  # fmt: skip
    schema = encoder.feature_schema(plan.task_specs, plan.funnel)
    encoded = {s: encoder.transform_table(parts[s]) for s in splits}
    tables = {s: load_tensor_table(t, schema) for s, t in encoded.items()}
    return FunnelData(schema, tables, split_plan.method, time.perf_counter() - start)


def prepare(n_rows: int, seed: int, splits: tuple[str, ...] = SPLITS,
            params: dict[str, Any] | None = None) -> FunnelData:  # fmt: skip
    """``n_rows`` simulated impressions (seed ``seed``), encoded."""
    params = params if params is not None else project_parameters()
    options = {**params["sources"]["simulated"], "n_rows": n_rows, "seed": seed}
    configs = (
        LabelsConfig.from_dict(params["labels"]),
        SplitConfig.from_dict(params["split"]),
        EncodingConfig.from_dict(params["encoding"]),
    )
    return encode(*read_source("simulated", options), *configs, splits)
