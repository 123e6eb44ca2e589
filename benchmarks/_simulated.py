"""Simulated funnel data and the project's default parameters, for benchmarks.

Chains the library functions the ``data_processing`` pipeline's nodes call,
without Kedro: ``read_source("simulated")`` -> labels -> split -> encoder
fitted on the train split -> ``load_tensor_table``. Validation is left out:
the simulator's rows are valid by construction and it changes no row.
Parameters are ``conf/base/parameters_*.yml`` read as plain YAML, so a
benchmark trains with the defaults of ``kedro run``.
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
    """Encoded simulated splits (the true propensities as extras)."""

    schema: FeatureSchema
    tables: dict[str, TensorTable]
    seconds: float

    def describe(self) -> dict[str, Any]:
        """Rows, clicks and purchases per split."""
        out = {}
        for name, table in self.tables.items():
            labels = table.labels_dict()
            out[name] = {
                "rows": len(table),
                "clicks": int(labels["ctr"].sum()),
                "purchases": int(labels["ctcvr"].sum()),
            }
        return out


def prepare(
    n_rows: int,
    seed: int,
    splits: tuple[str, ...] = SPLITS,
    params: dict[str, Any] | None = None,
) -> FunnelData:
    """Simulate, label, split and encode ``n_rows`` impressions (seed ``seed``)."""
    start = time.perf_counter()
    params = params if params is not None else project_parameters()
    options = {**params["sources"]["simulated"], "n_rows": n_rows, "seed": seed}
    raw_schema, raw = read_source("simulated", options)
    plan = plan_labels(raw_schema, LabelsConfig.from_dict(params["labels"]))
    labelled = FrameTable(label_table(raw, plan).to_pandas())  # generated once
    split_plan = plan_split(
        labelled,
        SplitConfig.from_dict(params["split"]),
        split_column=plan.split_column,
        time_column=plan.time_column,
    )
    parts = split_table(labelled, split_plan)
    encoder = FeatureEncoder.fit(
        parts["train"],
        sparse=plan.sparse,
        dense=plan.dense,
        config=EncodingConfig.from_dict(params["encoding"]),
        labels=plan.task_names,
        extras=plan.extras,
    )
    schema = encoder.feature_schema(plan.task_specs, plan.funnel)
    tables = {
        name: load_tensor_table(encoder.transform_table(parts[name]), schema)
        for name in splits
    }
    return FunnelData(schema, tables, time.perf_counter() - start)
