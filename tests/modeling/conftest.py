"""Shared fixtures for the modeling tests: a tiny schema and planted-signal data.

Reusable by every modeling test (models, weighting, trainer, metrics, export):

* ``tiny_schema``: 3 sparse fields + 3 dense, tasks ``ctr`` and ``ctcvr``
  with the click -> conversion funnel, extras holding the true propensities.
* ``regression_schema``: same inputs, tasks ``ctr`` (classification) and
  ``value`` (regression).
* ``planted_frames``: train/valid/test DataFrames (20 000 rows in all) drawn
  from a known logistic ground truth (see :func:`make_planted_frame`).
* ``planted_tables``: the same splits as ``TensorTable`` for ``tiny_schema``.
* ``regression_tables``: the splits as ``TensorTable`` for ``regression_schema``.
* ``make_batch``: a function ``(n_rows, seed=0) -> (sparse, dense)`` of random
  valid inputs for ``tiny_schema``.
* ``small_model_configs``: per registered model, hyperparameters small enough
  for fast tests (:func:`shrunk_config`).
* ``build_small_model``: ``(name, schema, tasks=None, seed=0, **overrides) ->
  model`` built with those small hyperparameters under a fixed seed.

Nothing here names a model: :func:`shrunk_config` derives the test sizes of
any registered model from its config class, so a model added to the registry
is tested by every registry-parametrised suite without an entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import pandas as pd
import pytest
import torch

from mtl_reco.modeling.config import ModelConfig
from mtl_reco.modeling.data import TensorTable
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.models.registry import (
    available_models,
    build_model,
    get_model_class,
)
from mtl_reco.schema import (
    DenseFeature,
    FeatureSchema,
    Funnel,
    SparseFeature,
    TaskSpec,
)

SPARSE = (("user", 60), ("item", 40), ("cat", 12))
DENSE = ("d0", "d1", "d2")
EXTRAS = ("true_pctr", "true_pcvr", "true_pctcvr")
PLANTED_ROWS = {"train": 14_000, "valid": 3_000, "test": 3_000}


def shrunk_config(
    name: str, size: Literal["small", "tiny"] = "small"
) -> dict[str, object]:
    """Test-sized hyperparameters of the registered model ``name``.

    Derived from the defaults of the model's config class (the fields it adds
    to :class:`~mtl_reco.modeling.config.ModelConfig`), so any registered
    model gets test sizes without an entry in the test suite:

    * a list of ints is a list of layer widths: ``small`` keeps every layer
      at an eighth of its width (``[256, 128] -> [32, 16]``, ``[64] -> [8]``),
      ``tiny`` keeps only the first layer at a 32nd (``-> [8]``, ``[64] ->
      [4]``); widths never go below 4 and an empty list stays empty;
    * an int field named ``n_*`` is a count (experts, levels): at most 4
      (``small``) or 2 (``tiny``);
    * every other field keeps its default.

    ``small`` models still learn the planted signal; ``tiny`` ones are for
    the model x strategy matrix, which only checks that training runs.
    """
    config_cls = get_model_class(name).config_cls
    out: dict[str, object] = {}
    for field, info in config_cls.model_fields.items():
        if field in ModelConfig.model_fields:
            continue
        default = info.get_default(call_default_factory=True)
        if isinstance(default, list) and all(
            isinstance(w, int) and not isinstance(w, bool) for w in default
        ):
            if size == "small":
                out[field] = [max(w // 8, 4) for w in default]
            else:
                out[field] = [max(w // 32, 4) for w in default[:1]]
        elif (
            field.startswith("n_")
            and isinstance(default, int)
            and not isinstance(default, bool)
        ):
            out[field] = min(default, 4 if size == "small" else 2)
    return out


SMALL_MODEL_CONFIGS: dict[str, dict[str, object]] = {
    name: shrunk_config(name) for name in available_models()
}
""":func:`shrunk_config` of every model registered when this module loads."""


def build_tiny_schema(embedding_dim: int = 8) -> FeatureSchema:
    """The ``tiny_schema`` fixture's schema (a plain function for reuse)."""
    return FeatureSchema(
        sparse=tuple(SparseFeature(n, c, embedding_dim) for n, c in SPARSE),
        dense=tuple(DenseFeature(n) for n in DENSE),
        tasks=(TaskSpec("ctr"), TaskSpec("ctcvr")),
        funnel=Funnel(click="ctr", conversion="ctcvr"),
        extras=EXTRAS,
    )


def build_regression_schema(embedding_dim: int = 8) -> FeatureSchema:
    """Inputs of ``tiny_schema``, tasks ``ctr`` + ``value`` (regression)."""
    return FeatureSchema(
        sparse=tuple(SparseFeature(n, c, embedding_dim) for n, c in SPARSE),
        dense=tuple(DenseFeature(n) for n in DENSE),
        tasks=(TaskSpec("ctr"), TaskSpec("value", "regression")),
        extras=EXTRAS,
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_planted_frame(n_rows: int, seed: int, truth_seed: int = 7) -> pd.DataFrame:
    """Rows drawn from a fixed logistic ground truth (``truth_seed``).

    Per field and id there is a click effect and a conversion effect
    (correlated, rho ~ 0.6); dense features add linear terms. ``click ~
    Bernoulli(sigmoid(ctr logit))``, ``purchase | click ~
    Bernoulli(sigmoid(cvr logit))``, ``ctcvr = click * purchase`` and
    ``value`` (a regression target) = the click logit + N(0, 0.5^2) noise.
    Id 0 (missing) appears in about 2 % of the cells. Oracle AUCs are about
    0.81 (ctr) and 0.87 (ctcvr) on the test split.
    """
    truth = np.random.default_rng(truth_seed)
    click_eff = {n: truth.normal(0.0, 0.9, c) for n, c in SPARSE}
    conv_eff = {
        n: 0.6 * click_eff[n] + 0.8 * truth.normal(0.0, 0.9, c) for n, c in SPARSE
    }
    w_click = truth.normal(0.0, 0.6, len(DENSE))
    w_conv = truth.normal(0.0, 0.6, len(DENSE))

    rng = np.random.default_rng(seed)
    frame: dict[str, np.ndarray] = {}
    click_logit = np.full(n_rows, -0.7)
    conv_logit = np.full(n_rows, -0.3)
    for name, card in SPARSE:
        ids = rng.integers(1, card, n_rows)
        ids[rng.random(n_rows) < 0.02] = 0
        frame[name] = ids.astype(np.int64)
        click_logit += click_eff[name][ids]
        conv_logit += conv_eff[name][ids]
    dense = rng.normal(0.0, 1.0, (n_rows, len(DENSE))).astype(np.float32)
    for j, name in enumerate(DENSE):
        frame[name] = dense[:, j]
    click_logit += dense @ w_click
    conv_logit += dense @ w_conv
    pctr, pcvr = _sigmoid(click_logit), _sigmoid(conv_logit)
    click = (rng.random(n_rows) < pctr).astype(np.float32)
    purchase = (rng.random(n_rows) < pcvr).astype(np.float32) * click
    frame["ctr"] = click
    frame["ctcvr"] = purchase
    frame["value"] = (click_logit + rng.normal(0.0, 0.5, n_rows)).astype(np.float32)
    frame["true_pctr"] = pctr
    frame["true_pcvr"] = pcvr
    frame["true_pctcvr"] = pctr * pcvr
    return pd.DataFrame(frame)


@pytest.fixture(scope="session")
def tiny_schema() -> FeatureSchema:
    return build_tiny_schema()


@pytest.fixture(scope="session")
def regression_schema() -> FeatureSchema:
    return build_regression_schema()


@pytest.fixture(scope="session")
def planted_frames() -> dict[str, pd.DataFrame]:
    return {
        split: make_planted_frame(n, seed=i)
        for i, (split, n) in enumerate(PLANTED_ROWS.items())
    }


@pytest.fixture(scope="session")
def planted_tables(
    planted_frames: dict[str, pd.DataFrame], tiny_schema: FeatureSchema
) -> dict[str, TensorTable]:
    return {
        split: TensorTable.from_frame(frame, tiny_schema)
        for split, frame in planted_frames.items()
    }


@pytest.fixture(scope="session")
def regression_tables(
    planted_frames: dict[str, pd.DataFrame], regression_schema: FeatureSchema
) -> dict[str, TensorTable]:
    return {
        split: TensorTable.from_frame(frame, regression_schema)
        for split, frame in planted_frames.items()
    }


def random_inputs(
    schema: FeatureSchema, n_rows: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random valid ``(sparse int32 (n, F), dense float32 (n, D))`` for ``schema``."""
    gen = torch.Generator().manual_seed(seed)
    sparse = torch.stack(
        [
            torch.randint(0, f.cardinality, (n_rows,), generator=gen)
            for f in schema.sparse
        ],
        dim=1,
    ).to(torch.int32)
    dense = torch.randn(n_rows, len(schema.dense), generator=gen)
    return sparse, dense


@pytest.fixture
def make_batch(
    tiny_schema: FeatureSchema,
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    def _make(n_rows: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return random_inputs(tiny_schema, n_rows, seed)

    return _make


@pytest.fixture(scope="session")
def small_model_configs() -> dict[str, dict[str, object]]:
    return {name: shrunk_config(name) for name in available_models()}


def make_small_model(
    name: str,
    schema: FeatureSchema,
    tasks: list[str] | None = None,
    seed: int = 0,
    **overrides: object,
) -> MultiTaskModel:
    """Build ``name`` with :func:`shrunk_config` (+ overrides) under ``seed``."""
    torch.manual_seed(seed)
    return build_model(name, schema, tasks, {**shrunk_config(name), **overrides})


@pytest.fixture(scope="session")
def build_small_model() -> Callable[..., MultiTaskModel]:
    return make_small_model


@pytest.fixture
def single_thread() -> Iterator[None]:
    """One intra-op thread for the test: tiny ops, where a thread pool on a busy
    shared machine costs more than it gains."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
