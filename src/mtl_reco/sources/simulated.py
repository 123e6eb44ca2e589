"""Simulated entire-space click -> purchase funnel with Ali-CCP's schema.

The built-in default source: a fresh checkout trains on it with no download.
Every row is one impression with the 23 sparse and 8 dense columns of the
processed Ali-CCP format, ``click``/``purchase`` labels drawn from known
propensities, and the true propensities themselves as extras
(``true_pctr``, ``true_pcvr``, ``true_pctcvr = true_pctr * true_pcvr`` exactly)
plus a ``day`` column for time-based splits.

Generative story (all sizes are :class:`SimulatedOptions`):

* **World** (drawn once per seed). Categories carry a click factor and a
  conversion factor. Items belong to a category (every category has at least
  one item), a shop, a brand and an intention node; their latent factors are
  noisy copies of their category's. Users have an activity level, a gender,
  an age bucket, three behaviour slots (a category plus the shop, brand and
  intention node of one item of that category, each with a heavy-tailed
  count), a click latent factor pulled towards their behaviour categories, a
  conversion latent factor independent of them (so that targeting alone does
  not correlate the two signals), and profile fields derived from all that:
  ``121`` (grid of the first click and conversion factor), ``122`` (gender x
  age group), ``124``,
  ``125``, ``126`` (purchase power quartile), ``127`` (activity quartile),
  ``128`` (working, depends on age), ``129`` (geography). The same user always
  has the same profile and behaviour fields; the same item always has the
  same ``206/207/210/216``.
* **Impressions.** The user is drawn with Zipf-like popularity; the item is
  drawn from one of the user's behaviour categories with probability
  ``target_share`` (within the category by item popularity), otherwise from
  the global Zipf-like item popularity; the scenario ``301`` takes 3 values.
  Cross fields follow RAW_FORMAT.md: ``508`` = behaviour category x item
  category, ``509`` = behaviour shop x item shop, ``702`` = behaviour brand x
  item brand, ``853`` = behaviour intention x item intention. When the item
  matches one of the user's behaviour slots the id is the matched id + 1 and
  ``D<field>`` is that slot's count; otherwise the id is ``1`` (the
  "no overlap" bucket; ids stay >= 1) and ``D<field>`` is 0.
* **Propensities.** A structural click score ``A`` (user x item click factors,
  user activity and item biases, scenario, cross-feature matches weighted by
  their counts) and an independent structural conversion score ``B`` (user x
  item conversion factors, purchase power, item quality, scenario) are
  standardised on a calibration sample. A per-impression *intent* ``eta``
  that no feature shows takes ``intent_share`` of the click signal:
  ``S_c = sqrt(1 - w) * A + sqrt(w) * eta`` and the conversion signal is
  ``S_v = rho * S_c + sqrt(1 - rho**2) * B``, so ``corr(S_c, S_v) = rho``
  (``correlation``). Then ``pctr = sigmoid(b_c + click_strength * S_c)``,
  ``pcvr = sigmoid(b_v + conversion_strength * S_v)``, with intercepts
  solved by bisection on the calibration sample so that the expected CTR is
  ``ctr`` and the expected conversion rate among clicks is ``cvr``.
* **Labels.** ``click ~ Bernoulli(pctr)``, ``purchase = click *
  Bernoulli(pcvr)``: a purchase never happens without a click.

Selection bias is real: with ``rho > 0`` clicked impressions have a higher
conversion propensity than unclicked ones, and because part of that comes
from ``eta`` (invisible in the features), a CVR model fitted on clicked rows
only over-estimates pCVR on the unclicked rest of the space, which is the
situation ESMM was designed for.

Determinism and memory: rows are generated in fixed blocks of
:data:`BLOCK_ROWS`; block ``k`` uses its own random stream derived from
``(seed, k)``, so the rows depend on the seed only, never on the caller's
``chunk_rows`` (which merely re-slices the blocks). Memory is bounded by the
world (``O(n_users + n_items)``) plus one block plus one output chunk, so
10 M rows stream in the same memory as 1 M.

Defaults: ``n_rows=500_000`` gives about 20 k clicks and 2 k purchases (CTR
4 %, CVR 10 %), enough for a learnable CVR and a stable CVR AUC on clicked
rows, while one epoch of a multi-task model over it takes seconds on two CPU
cores, so training five models stays within minutes. ``cvr=0.10`` is far
above Ali-CCP's ~0.5 % conversion-given-click on purpose: with Ali-CCP's rate
a 500 k-row sample would hold about 100 purchases and the CVR task would not
be learnable.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Self

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from mtl_reco.sources._common import SourceTable, check_chunk_rows, rechunk
from mtl_reco.sources.ali_ccp import DEFAULT_TASKS, DENSE, LABELS, SPARSE
from mtl_reco.sources.base import RawSchema
from mtl_reco.typed_config import ConfigError, StrictConfig

logger = logging.getLogger(__name__)

SOURCE_NAME = "simulated"
BLOCK_ROWS = 65_536
"""Rows per internal generation block (fixed: changing it changes the data)."""
CALIBRATION_ROWS = 200_000
"""Impressions drawn (from their own stream) to standardise scores and fit
the intercepts."""

EXTRAS = ("true_pctr", "true_pcvr", "true_pctcvr", "day")

_SLOTS = 3  # behaviour slots per user
_SCENARIO_P = np.array([0.6, 0.25, 0.15])
_SCENARIO_CLICK = np.array([0.3, 0.0, -0.4])
_SCENARIO_CONV = np.array([0.1, 0.0, -0.1])
_STREAM_WORLD, _STREAM_BLOCK, _STREAM_CALIBRATION = 0, 1, 2


class SimulatedOptions(StrictConfig):
    """Options of the ``simulated`` source (see the module docstring).

    Attributes:
        n_rows: Number of impressions.
        seed: Seed of every random stream (>= 0).
        ctr: Target click-through rate (expected value; realised within
            sampling noise).
        cvr: Target conversion rate among clicked impressions.
        correlation: Correlation in [-1, 1] between the click signal and the
            conversion signal (0 removes selection bias).
        n_users: Number of distinct users (field ``101``).
        n_items: Number of distinct items (field ``205``); >= n_categories.
        n_categories: Number of item categories (field ``206``).
        zipf_exponent: Exponent of the Zipf-like user and item popularity
            (0 = uniform).
        n_days: Number of days; ``day`` runs 0..n_days-1 in row order.
        latent_dim: Dimension of the latent user/item factors.
        click_strength: Standard deviation of the click logit around its
            intercept (higher = easier CTR task).
        conversion_strength: The same for the conversion logit.
        intent_share: Share in [0, 1) of the click signal's variance that is
            per-impression intent invisible in the features.
        target_share: Probability that the item comes from one of the user's
            behaviour categories (drives the cross features).
    """

    n_rows: int = Field(default=500_000, ge=0)
    seed: int = Field(default=2024, ge=0)
    ctr: float = Field(default=0.04, gt=0.0, lt=1.0)
    cvr: float = Field(default=0.10, gt=0.0, lt=1.0)
    correlation: float = Field(default=0.5, ge=-1.0, le=1.0)
    n_users: int = Field(default=50_000, ge=1)
    n_items: int = Field(default=20_000, ge=1)
    n_categories: int = Field(default=200, ge=1)
    zipf_exponent: float = Field(default=0.8, ge=0.0)
    n_days: int = Field(default=7, ge=1)
    latent_dim: int = Field(default=8, ge=1)
    click_strength: float = Field(default=1.5, ge=0.0)
    conversion_strength: float = Field(default=1.5, ge=0.0)
    intent_share: float = Field(default=0.2, ge=0.0, lt=1.0)
    target_share: float = Field(default=0.3, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _items_cover_categories(self) -> Self:
        """Every category needs at least one item."""
        if self.n_items < self.n_categories:
            raise ConfigError(
                "SimulatedOptions: n_items must be >= n_categories, got "
                f"{self.n_items} < {self.n_categories}"
            )
        return self


def simulated_schema() -> RawSchema:
    """The raw schema of the simulator (independent of its options)."""
    return RawSchema(
        source=SOURCE_NAME,
        labels=LABELS,
        sparse=SPARSE,
        dense=DENSE,
        extras=EXTRAS,
        split_column=None,
        funnel=("click", "purchase"),
        default_tasks=DEFAULT_TASKS,
        time_column="day",
    )


def read_simulated(options: SimulatedOptions) -> tuple[RawSchema, SourceTable]:
    """Return the schema and a lazy, re-iterable table of simulated rows."""
    schema = simulated_schema()

    def produce(chunk_rows: int) -> Iterator[pd.DataFrame]:
        return iter_simulated(options, chunk_rows)

    return schema, SourceTable(produce, schema.columns, num_rows=options.n_rows)


def iter_simulated(
    options: SimulatedOptions, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """Yield the simulated rows in frames of ``chunk_rows`` rows."""
    chunk_rows = check_chunk_rows(chunk_rows)
    if options.n_rows == 0:
        yield _empty_frame()
        return
    world = _world(options.model_copy(update={"n_rows": 0}))  # same world any size
    n_blocks = math.ceil(options.n_rows / BLOCK_ROWS)
    blocks = (generate_block(world, options, k) for k in range(n_blocks))
    yield from rechunk(blocks, chunk_rows)


def _empty_frame() -> pd.DataFrame:
    cols: dict[str, np.ndarray] = {c: np.zeros(0, np.int8) for c in LABELS}
    cols.update({c: np.zeros(0, np.int64) for c in SPARSE})
    cols.update({c: np.zeros(0, np.float64) for c in DENSE})
    cols.update({c: np.zeros(0, np.float64) for c in EXTRAS[:3]})
    cols["day"] = np.zeros(0, np.int64)
    return pd.DataFrame(cols)


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like weights over ``n`` entities, popularity rank shuffled vs index."""
    ranks = rng.permutation(n)
    return np.asarray(1.0 / np.power(ranks + 1.0, exponent), dtype=np.float64)


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


def _draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def _quantile_bins(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-frequency bins 1..n_bins of ``x``."""
    edges = np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.searchsorted(edges, x, side="right").astype(np.int64) + 1


@dataclass(frozen=True)
class _World:
    """Everything drawn once per seed: users, items, calibration constants."""

    user_cdf: np.ndarray
    item_cdf: np.ndarray
    # within-category item sampler: items sorted by category, key = cat + cdf
    cat_items: np.ndarray
    cat_keys: np.ndarray
    cat_end: np.ndarray
    # items
    item_cat: np.ndarray
    item_shop: np.ndarray
    item_brand: np.ndarray
    item_intent: np.ndarray
    item_click: np.ndarray
    item_conv: np.ndarray
    item_bias_click: np.ndarray
    item_bias_conv: np.ndarray
    # users
    user_profile: np.ndarray  # (n_users, 8): fields 121..129 in SPARSE order
    user_slot_cat: np.ndarray  # (n_users, SLOTS)
    user_slot_shop: np.ndarray
    user_slot_brand: np.ndarray
    user_slot_intent: np.ndarray
    user_slot_counts: np.ndarray  # (n_users, 4, SLOTS): cat, shop, brand, intent
    user_click: np.ndarray
    user_conv: np.ndarray
    user_bias_click: np.ndarray
    user_bias_conv: np.ndarray
    # calibration
    a_mean: float = 0.0
    a_std: float = 1.0
    b_mean: float = 0.0
    b_std: float = 1.0
    click_intercept: float = 0.0
    conv_intercept: float = 0.0


@lru_cache(maxsize=4)
def _world(options: SimulatedOptions) -> _World:
    """Build (and cache) the world and its calibration for these options."""
    o = options
    rng = _rng(o.seed, _STREAM_WORLD)
    d = o.latent_dim
    n_cat, n_items, n_users = o.n_categories, o.n_items, o.n_users
    n_shops = max(1, n_items // 8)
    n_brands = max(1, n_items // 12)
    n_intents = max(1, 2 * n_cat)

    # Categories and items.
    cat_weights = _zipf_weights(n_cat, 0.8, rng)
    cat_click = rng.normal(size=(n_cat, d))
    cat_conv = rng.normal(size=(n_cat, d))
    item_cat = np.empty(n_items, np.int64)
    item_cat[:n_cat] = rng.permutation(n_cat)
    item_cat[n_cat:] = _draw(_cdf(cat_weights), rng.random(n_items - n_cat))
    item_cat = item_cat[rng.permutation(n_items)]
    item_shop = _draw(_cdf(_zipf_weights(n_shops, 0.9, rng)), rng.random(n_items))
    item_brand = _draw(_cdf(_zipf_weights(n_brands, 0.9, rng)), rng.random(n_items))
    cat_intent = rng.integers(0, n_intents, size=n_cat)
    item_intent = (cat_intent[item_cat] + rng.integers(0, 3, size=n_items)) % n_intents
    item_click = 0.6 * cat_click[item_cat] + 0.8 * rng.normal(size=(n_items, d))
    item_conv = 0.6 * cat_conv[item_cat] + 0.8 * rng.normal(size=(n_items, d))
    item_bias_click = rng.normal(0.0, 0.5, size=n_items)
    item_bias_conv = rng.normal(0.0, 0.5, size=n_items)
    item_weights = _zipf_weights(n_items, o.zipf_exponent, rng)
    item_cdf = _cdf(item_weights)

    order = np.argsort(item_cat, kind="stable")
    sorted_cat = item_cat[order]
    w = item_weights[order]
    cat_total = np.bincount(sorted_cat, weights=w, minlength=n_cat)
    cat_start = np.searchsorted(sorted_cat, np.arange(n_cat), side="left")
    cat_end = np.searchsorted(sorted_cat, np.arange(n_cat), side="right")
    within = np.cumsum(w) - np.repeat(
        np.cumsum(cat_total) - cat_total, cat_end - cat_start
    )
    within /= cat_total[sorted_cat]
    within[cat_end - 1] = 1.0
    cat_keys = sorted_cat + within

    # Users.
    user_cdf = _cdf(_zipf_weights(n_users, o.zipf_exponent, rng))
    activity = rng.normal(size=n_users)
    gender = rng.integers(1, 3, size=n_users)
    age = (
        _draw(
            _cdf(np.array([0.08, 0.22, 0.25, 0.2, 0.12, 0.08, 0.05])),
            rng.random(n_users),
        )
        + 1
    )
    working = np.where(
        rng.random(n_users) < np.where((age >= 2) & (age <= 5), 0.8, 0.3), 2, 1
    )
    geo = _draw(_cdf(np.array([0.35, 0.25, 0.2, 0.12, 0.08])), rng.random(n_users)) + 1

    slot_cat = _draw(_cdf(cat_weights), rng.random((n_users, _SLOTS)))
    ref = _draw_in_category(
        cat_keys, cat_end, order, slot_cat, rng.random((n_users, _SLOTS))
    )
    slot_shop = item_shop[ref]
    slot_brand = item_brand[ref]
    slot_intent = item_intent[ref]
    counts = (
        np.floor(
            np.exp(
                1.0
                + 0.8 * activity[:, None, None]
                + rng.normal(size=(n_users, 4, _SLOTS))
            )
        )
        + 1.0
    )

    taste_click = cat_click[slot_cat].mean(axis=1) * math.sqrt(_SLOTS)
    user_click = 0.6 * taste_click + 0.8 * rng.normal(size=(n_users, d))
    # The conversion taste is NOT tied to the behaviour categories: targeting
    # (which drives clicks) must not correlate the two signals by itself, so
    # that ``correlation`` alone sets their correlation.
    user_conv = rng.normal(size=(n_users, d))
    user_bias_click = (
        0.4 * activity
        + 0.15 * (gender - 1.5)
        - 0.05 * (age - 3)
        + 0.3 * rng.normal(size=n_users)
    )
    power = rng.normal(size=n_users)
    user_bias_conv = 0.4 * power + 0.2 * rng.normal(size=n_users)

    grid_a = _quantile_bins(user_click[:, 0], 10)
    grid_b = _quantile_bins(user_conv[:, 0], 10)
    profile = np.stack(
        [
            (grid_a - 1) * 10 + grid_b,  # 121: profile category (1..100)
            (gender - 1) * 7 + age,  # 122: group (1..14)
            gender,  # 124
            age,  # 125
            _quantile_bins(power + 0.5 * rng.normal(size=n_users), 4),  # 126
            _quantile_bins(activity + 0.5 * rng.normal(size=n_users), 4),  # 127
            working,  # 128
            geo,  # 129
        ],
        axis=1,
    ).astype(np.int64)

    world = _World(
        user_cdf=user_cdf,
        item_cdf=item_cdf,
        cat_items=order,
        cat_keys=cat_keys,
        cat_end=cat_end,
        item_cat=item_cat,
        item_shop=item_shop,
        item_brand=item_brand,
        item_intent=item_intent,
        item_click=item_click,
        item_conv=item_conv,
        item_bias_click=item_bias_click,
        item_bias_conv=item_bias_conv,
        user_profile=profile,
        user_slot_cat=slot_cat,
        user_slot_shop=slot_shop,
        user_slot_brand=slot_brand,
        user_slot_intent=slot_intent,
        user_slot_counts=counts,
        user_click=user_click,
        user_conv=user_conv,
        user_bias_click=user_bias_click,
        user_bias_conv=user_bias_conv,
    )
    return _calibrate(world, o)


def _draw_in_category(
    cat_keys: np.ndarray,
    cat_end: np.ndarray,
    order: np.ndarray,
    cats: np.ndarray,
    u: np.ndarray,
) -> np.ndarray:
    """Draw one item per entry of ``cats`` by popularity within that category."""
    pos = np.searchsorted(cat_keys, cats + u, side="right")
    pos = np.minimum(pos, cat_end[cats] - 1)
    return np.asarray(order[pos], dtype=np.int64)


def _calibrate(world: _World, o: SimulatedOptions) -> _World:
    """Standardise the scores and solve the intercepts on a calibration sample."""
    rng = _rng(o.seed, _STREAM_CALIBRATION)
    imp = _impressions(world, o, rng, CALIBRATION_ROWS)
    a, b = imp["a_raw"], imp["b_raw"]
    a_mean, a_std = float(a.mean()), float(a.std()) or 1.0
    b_mean, b_std = float(b.mean()), float(b.std()) or 1.0
    s_click, s_conv = _signals(
        o, (a - a_mean) / a_std, (b - b_mean) / b_std, imp["eta"]
    )
    zc = o.click_strength * s_click
    click_b = _bisect(lambda x: float(_sigmoid(x + zc).mean()) - o.ctr)
    pctr = _sigmoid(click_b + zc)
    zv = o.conversion_strength * s_conv
    total = float(pctr.sum())
    conv_b = _bisect(lambda x: float((pctr * _sigmoid(x + zv)).sum()) / total - o.cvr)
    logger.debug(
        "simulated: calibrated click intercept %.4f, conversion intercept %.4f",
        click_b,
        conv_b,
    )
    return dataclasses.replace(
        world,
        a_mean=a_mean,
        a_std=a_std,
        b_mean=b_mean,
        b_std=b_std,
        click_intercept=click_b,
        conv_intercept=conv_b,
    )


def _bisect(f: object, lo: float = -30.0, hi: float = 30.0) -> float:
    """Root of an increasing function on [lo, hi] by bisection."""
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if f(mid) < 0:  # type: ignore[operator]
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _signals(
    o: SimulatedOptions, a: np.ndarray, b: np.ndarray, eta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    w, rho = o.intent_share, o.correlation
    s_click = math.sqrt(1.0 - w) * a + math.sqrt(w) * eta
    s_conv = rho * s_click + math.sqrt(max(0.0, 1.0 - rho * rho)) * b
    return s_click, s_conv


def _impressions(
    world: _World, o: SimulatedOptions, rng: np.random.Generator, n: int
) -> dict[str, np.ndarray]:
    """Draw ``n`` impressions: ids, features and raw (unstandardised) scores."""
    wd = world
    user = _draw(wd.user_cdf, rng.random(n))
    targeted = rng.random(n) < o.target_share
    slot = rng.integers(0, _SLOTS, size=n)
    item = _draw(wd.item_cdf, rng.random(n))
    u_in = rng.random(n)
    if targeted.any():
        cats = wd.user_slot_cat[user[targeted], slot[targeted]]
        item[targeted] = _draw_in_category(
            wd.cat_keys, wd.cat_end, wd.cat_items, cats, u_in[targeted]
        )
    scenario = _draw(_cdf(_SCENARIO_P), rng.random(n))
    eta = rng.normal(size=n)

    out: dict[str, np.ndarray] = {"user": user, "item": item, "scenario": scenario}
    cross_score = np.zeros(n)
    pairs = (
        ("508", wd.user_slot_cat, wd.item_cat, 0),
        ("509", wd.user_slot_shop, wd.item_shop, 1),
        ("702", wd.user_slot_brand, wd.item_brand, 2),
        ("853", wd.user_slot_intent, wd.item_intent, 3),
    )
    for field, slots, item_attr, k in pairs:
        attr = item_attr[item]
        match = slots[user] == attr[:, None]
        has = match.any(axis=1)
        first = match.argmax(axis=1)
        count = np.where(has, wd.user_slot_counts[user, k, first], 0.0)
        out[field] = np.where(has, attr + 2, 1).astype(np.int64)
        out["D" + field] = count
        cross_score += 0.35 * np.log1p(count)

    d = o.latent_dim
    dot_click = np.einsum(
        "ij,ij->i", wd.user_click[user], wd.item_click[item]
    ) / math.sqrt(d)
    dot_conv = np.einsum(
        "ij,ij->i", wd.user_conv[user], wd.item_conv[item]
    ) / math.sqrt(d)
    out["a_raw"] = (
        dot_click
        + wd.user_bias_click[user]
        + wd.item_bias_click[item]
        + _SCENARIO_CLICK[scenario]
        + cross_score
    )
    out["b_raw"] = (
        dot_conv
        + wd.user_bias_conv[user]
        + wd.item_bias_conv[item]
        + _SCENARIO_CONV[scenario]
    )
    out["eta"] = eta
    return out


def generate_block(world: _World, o: SimulatedOptions, k: int) -> pd.DataFrame:
    """Generate block ``k`` (rows ``k * BLOCK_ROWS`` onwards) as a DataFrame."""
    start = k * BLOCK_ROWS
    n = min(BLOCK_ROWS, o.n_rows - start)
    rng = _rng(o.seed, _STREAM_BLOCK, k)
    imp = _impressions(world, o, rng, n)
    a = (imp["a_raw"] - world.a_mean) / world.a_std
    b = (imp["b_raw"] - world.b_mean) / world.b_std
    s_click, s_conv = _signals(o, a, b, imp["eta"])
    pctr = _sigmoid(world.click_intercept + o.click_strength * s_click)
    pcvr = _sigmoid(world.conv_intercept + o.conversion_strength * s_conv)
    click = rng.random(n) < pctr
    purchase = click & (rng.random(n) < pcvr)

    user, item = imp["user"], imp["item"]
    profile = world.user_profile[user]
    last = _SLOTS - 1
    counts = world.user_slot_counts[user, :, last]
    cols: dict[str, np.ndarray] = {
        "click": click.astype(np.int8),
        "purchase": purchase.astype(np.int8),
        "101": user.astype(np.int64) + 1,
    }
    for j, field in enumerate(("121", "122", "124", "125", "126", "127", "128", "129")):
        cols[field] = profile[:, j]
    cols["205"] = item.astype(np.int64) + 1
    cols["206"] = world.item_cat[item] + 1
    cols["207"] = world.item_shop[item] + 1
    cols["210"] = world.item_intent[item] + 1
    cols["216"] = world.item_brand[item] + 1
    for field in ("508", "509", "702", "853"):
        cols[field] = imp[field]
    cols["301"] = imp["scenario"].astype(np.int64) + 1
    cols["109_14"] = world.user_slot_cat[user, last] + 1
    cols["110_14"] = world.user_slot_shop[user, last] + 1
    cols["127_14"] = world.user_slot_brand[user, last] + 1
    cols["150_14"] = world.user_slot_intent[user, last] + 1
    for j, field in enumerate(("D109_14", "D110_14", "D127_14", "D150_14")):
        cols[field] = counts[:, j]
    for field in ("D508", "D509", "D702", "D853"):
        cols[field] = imp[field]
    cols["true_pctr"] = pctr
    cols["true_pcvr"] = pcvr
    cols["true_pctcvr"] = pctr * pcvr
    rows = np.arange(start, start + n, dtype=np.int64)
    cols["day"] = rows * o.n_days // o.n_rows
    frame = pd.DataFrame(cols)
    frame.index = pd.RangeIndex(start, start + n)
    return frame
