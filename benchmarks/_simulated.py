"""Simulated funnel data and the project's default parameters, for benchmarks.

Used by ``serving.py`` and ``selection_bias.py``. It chains the same library
functions as the ``data_processing`` Kedro pipeline
(``src/mtl_reco/pipelines/data_processing/*/nodes.py``) without Kedro:
``read_source("simulated")`` -> ``plan_labels``/``label_table`` ->
``plan_split``/``split_table`` -> ``FeatureEncoder.fit`` (train split only) ->
``transform_table`` -> ``feature_schema`` -> ``load_tensor_table``. The
validation stage (Great Expectations) is left out: the simulator's rows are
valid by construction and validation changes no row.

Parameters come from ``conf/base/parameters_*.yml`` (read as plain YAML; no
Kedro import), so a benchmark trains with exactly the defaults of
``kedro run``: the ``labels``, ``split`` and ``encoding`` blocks, the
simulated source's options (``n_rows`` and ``seed`` overridden by the
caller), every experiment's ``model.params`` and the ``trainer`` block.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import _common
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

CONF_DIR = _common.PROJECT_ROOT / "conf" / "base"
PARAMETER_FILES = ("parameters_data_processing.yml", "parameters_training.yml")
ARCHS = ("shared_bottom", "esmm", "mmoe", "ple", "aitm")
SPLITS = ("train", "valid", "test")


def project_parameters(conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """The committed default parameters (``conf/base``), merged, as plain dicts."""
    merged: dict[str, Any] = {}
    for name in PARAMETER_FILES:
        with open(conf_dir / name, encoding="utf-8") as fh:
            merged.update(yaml.safe_load(fh) or {})
    return merged


def model_params(arch: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``<arch>.model.params`` of the experiment named like the architecture."""
    params = params if params is not None else project_parameters()
    block = params[arch]["model"]
    if block["name"] != arch:
        raise ValueError(f"experiment {arch!r} builds {block['name']!r}, not {arch!r}")
    return dict(block.get("params") or {})


def trainer_config(
    params: dict[str, Any] | None = None, **overrides: Any
) -> TrainerConfig:
    """The ``trainer`` block, for a benchmark: CPU, no checkpoint, no bar.

    Args:
        params: Parameters (default: :func:`project_parameters`).
        **overrides: Top-level trainer keys to replace (e.g. ``seed``,
            ``epochs``, ``num_threads``).
    """
    params = params if params is not None else project_parameters()
    block = dict(params["trainer"])
    block.update(device="cpu", checkpoint_dir=None, progress=False, resume=False)
    block.update(overrides)
    return TrainerConfig.from_dict(block)


@dataclass
class FunnelData:
    """Encoded simulated splits with the true propensities as extras."""

    schema: FeatureSchema
    tables: dict[str, TensorTable]
    source_options: dict[str, Any]
    seconds: float

    def describe(self) -> dict[str, Any]:
        """Rows, clicks and purchases per split (JSON-plain)."""
        out: dict[str, Any] = {}
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
    *,
    splits: tuple[str, ...] = SPLITS,
    params: dict[str, Any] | None = None,
    **source_overrides: Any,
) -> FunnelData:
    """Generate, label, split and encode ``n_rows`` simulated impressions.

    The labelled events are materialised once in memory (about 300 MB per
    million rows) so that the split and encoding passes do not regenerate
    them.

    Args:
        n_rows: Impressions to simulate.
        seed: The simulator's seed (world and rows).
        splits: Splits to encode and return.
        params: Parameters (default: :func:`project_parameters`).
        **source_overrides: More simulator options (e.g. ``correlation``).
    """
    start = time.perf_counter()
    params = params if params is not None else project_parameters()
    options = {
        **params["sources"]["simulated"],
        **source_overrides,
        "n_rows": n_rows,
        "seed": seed,
    }
    raw_schema, raw = read_source("simulated", options)
    plan = plan_labels(raw_schema, LabelsConfig.from_dict(params["labels"]))
    labelled = FrameTable(label_table(raw, plan).to_pandas())
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
    return FunnelData(schema, tables, options, time.perf_counter() - start)
