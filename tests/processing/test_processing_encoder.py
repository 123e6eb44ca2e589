"""Feature encoder: train-only vocabularies, dense scalings, schema round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mtl_reco.processing.config import EmbeddingRule, EncodingConfig
from mtl_reco.processing.encoder import (
    EncoderError,
    FeatureEncoder,
    encoding_report,
    signed_log1p,
)
from mtl_reco.schema import FeatureSchema, Funnel
from mtl_reco.tables import FrameTable


def fit(frame, sparse=("u",), dense=(), chunk_rows=1000, **config):
    return FeatureEncoder.fit(
        FrameTable(frame),
        sparse=list(sparse),
        dense=list(dense),
        config=EncodingConfig(chunk_rows=chunk_rows, **config),
        labels=[c for c in ("ctr",) if c in frame],
        extras=[c for c in ("true_pctr",) if c in frame],
    )


def test_fit_on_train_only_unseen_test_id_maps_to_zero():
    train = pd.DataFrame({"u": [5, 5, 7, 7, 7, 9, 9]})
    test = pd.DataFrame({"u": [7, 42, 5, 9]})  # 42 appears only in test
    enc = fit(train, min_count=1)
    assert enc.sparse[0].values == [7, 5, 9]  # by frequency, ties by value
    np.testing.assert_array_equal(enc.transform(test)["u"], [1, 0, 2, 3])
    assert enc.transform(test)["u"].dtype == np.int32
    assert enc.sparse[0].cardinality == 4


def test_min_count_and_max_vocab_size():
    train = pd.DataFrame({"u": [1, 1, 1, 2, 2, 3, 4, 4, 4, 4]})
    enc = fit(train, min_count=2)
    assert enc.sparse[0].values == [4, 1, 2]
    assert enc.sparse[0].stats["rare_rows"] == 1  # the single 3
    np.testing.assert_array_equal(
        enc.transform(train)["u"], [2, 2, 2, 3, 3, 0, 1, 1, 1, 1]
    )
    capped = fit(train, min_count=1, max_vocab_size=2)
    assert capped.sparse[0].values == [4, 1]
    per_column = fit(train, min_count=1, min_count_overrides={"u": 3})
    assert per_column.sparse[0].values == [4, 1]


def test_missing_values_map_to_zero_and_are_counted():
    train = pd.DataFrame({"u": pd.array([3, None, 3, 8, 8], dtype="Int64")})
    enc = fit(train, min_count=1)
    assert enc.sparse[0].stats["missing_rows"] == 1
    np.testing.assert_array_equal(enc.transform(train)["u"], [1, 0, 1, 2, 2])
    # the same ids when a scoring chunk arrives as float or text
    as_float = pd.DataFrame({"u": [3.0, np.nan, 8.0]})
    np.testing.assert_array_equal(enc.transform(as_float)["u"], [1, 0, 2])
    as_text = pd.DataFrame({"u": ["3", "x", "8"]})
    np.testing.assert_array_equal(enc.transform(as_text)["u"], [1, 0, 2])


def test_string_vocabulary_with_missing():
    train = pd.DataFrame({"c": ["a", "b", None, "a", "NA", "NA", "NA"]})
    enc = fit(train, sparse=("c",), min_count=1)
    assert enc.sparse[0].kind == "str"
    assert enc.sparse[0].values == ["NA", "a", "b"]
    test = pd.DataFrame({"c": pd.Series(["b", None, "zzz", "NA"], dtype=object)})
    np.testing.assert_array_equal(enc.transform(test)["c"], [3, 0, 0, 1])


def test_fit_is_chunk_size_invariant():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"u": rng.integers(0, 30, 5000), "x": rng.lognormal(1.0, 1.5, 5000)}
    )
    for scaling in ("standard", "log1p", "minmax"):
        a = fit(frame, dense=("x",), chunk_rows=97, dense_scaling=scaling)
        b = fit(frame, dense=("x",), chunk_rows=5000, dense_scaling=scaling)
        assert a.sparse[0].values == b.sparse[0].values
        for key, value in a.dense[0].params.items():
            assert value == pytest.approx(b.dense[0].params[key], rel=1e-10)


def test_standard_scaling_numbers():
    x = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    enc = fit(pd.DataFrame({"u": 1, "x": x}), dense=("x",), dense_scaling="standard")
    mean, std = x.mean(), x.std()
    assert enc.dense[0].params == pytest.approx({"mean": mean, "std": std})
    out = enc.transform(pd.DataFrame({"u": [1, 1], "x": [4.0, 20.0]}))["x"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [(4 - mean) / std, (20 - mean) / std], rtol=1e-6)


def test_minmax_scaling_clips_outside_train_range():
    train = pd.DataFrame({"u": 1, "x": [2.0, 4.0, 6.0]})
    enc = fit(train, dense=("x",), dense_scaling="minmax")
    test = pd.DataFrame({"u": 1, "x": [2.0, 5.0, 6.0, 10.0, -3.0]})
    np.testing.assert_allclose(enc.transform(test)["x"], [0.0, 0.75, 1.0, 1.0, 0.0])
    unclipped = fit(train, dense=("x",), dense_scaling="minmax", clip_minmax=False)
    np.testing.assert_allclose(unclipped.transform(test)["x"], [0, 0.75, 1, 2, -1.25])


def test_log1p_scaling_and_per_feature_override():
    x = np.array([0.0, 1.0, 10.0, 100.0, 1000.0])
    frame = pd.DataFrame({"u": 1, "x": x, "y": x})
    enc = fit(
        frame,
        dense=("x", "y"),
        dense_scaling="log1p",
        dense_scaling_overrides={"y": "none"},
    )
    z = signed_log1p(x)
    out = enc.transform(frame)
    np.testing.assert_allclose(out["x"], (z - z.mean()) / z.std(), rtol=1e-6)
    np.testing.assert_allclose(out["y"], x, rtol=1e-7)
    assert signed_log1p(np.array([-math.e + 1]))[0] == pytest.approx(-1.0)


def test_constant_column_and_nan_handling():
    train = pd.DataFrame({"u": 1, "x": [5.0, 5.0, np.nan, np.inf]})
    enc = fit(train, dense=("x",), nan_fill=-1.0)
    assert enc.dense[0].stats == {"train_finite": 2, "train_nonfinite": 2}
    out = enc.transform(pd.DataFrame({"u": 1, "x": [5.0, np.nan, -np.inf, 7.0]}))["x"]
    np.testing.assert_allclose(out, [0.0, -1.0, -1.0, 2.0])


def test_output_columns_dtypes_and_extras():
    frame = pd.DataFrame(
        {
            "u": [1, 2, 2],
            "x": [0.5, 1.5, 2.5],
            "ctr": np.array([0, 1, 0], dtype=np.int8),
            "true_pctr": [0.1, 0.2, 0.3],
        }
    )
    enc = fit(frame, dense=("x",), min_count=1)
    out = enc.transform(frame)
    assert list(out.columns) == ["u", "x", "ctr", "true_pctr"]
    assert out.dtypes.to_dict() == {
        "u": np.int32,
        "x": np.float32,
        "ctr": np.float32,
        "true_pctr": np.float64,
    }
    scoring = enc.transform(frame[["u", "x"]])  # no labels or extras
    assert list(scoring.columns) == ["u", "x"]
    with pytest.raises(EncoderError, match=r"\['x'\] missing"):
        enc.transform(frame[["u"]])


def test_json_round_trip_encodes_identically():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "u": rng.integers(0, 50, 400),
            "s": rng.choice(["a", "b", "c"], 400),
            "x": rng.normal(size=400),
        }
    )
    enc = fit(frame, sparse=("u", "s"), dense=("x",))
    again = FeatureEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    pd.testing.assert_frame_equal(enc.transform(frame), again.transform(frame))
    assert again.to_dict() == enc.to_dict()


def test_feature_schema_round_trip_and_embedding_dims():
    frame = pd.DataFrame({"u": np.arange(300) % 100, "x": np.arange(300.0), "ctr": 0.0})
    enc = fit(frame, dense=("x",), min_count=1)
    schema = enc.feature_schema(
        [
            {"name": "ctr", "type": "classification"},
            {"name": "ctcvr", "type": "classification"},
        ],
        {"click": "ctr", "conversion": "ctcvr"},
        ["true_pctr"],
    )
    assert schema.sparse[0].cardinality == 101
    assert schema.sparse[0].embedding_dim == EmbeddingRule().dim_for(101) == 8
    assert schema.funnel == Funnel("ctr", "ctcvr")
    text = json.dumps(schema.to_dict())
    assert FeatureSchema.from_dict(json.loads(text)) == schema
    assert FeatureSchema.from_json(schema.to_json()).to_dict() == schema.to_dict()


def test_embedding_rule():
    rule = EmbeddingRule()  # ceil(2 * card**0.25), up to a multiple of 4, in [4, 16]
    assert [rule.dim_for(c) for c in (1, 3, 16, 101, 5000, 10**7)] == [
        4,
        4,
        4,
        8,
        16,
        16,
    ]
    assert EmbeddingRule(rule="fixed", dim=12).dim_for(10**6) == 12
    custom = EmbeddingRule(k=6.0, max_dim=64, multiple_of=1)
    assert custom.dim_for(10_000) == 60


def test_encoding_report_counts_id_zero_and_fills():
    train = pd.DataFrame({"u": [1, 1, 2, 2], "x": [1.0, 2.0, 3.0, 4.0]})
    test = pd.DataFrame({"u": [1, 3, 3, 2], "x": [np.nan, 1.0, 1.0, np.inf]})
    enc = fit(train, dense=("x",))
    report = encoding_report(
        enc,
        {"train": FrameTable(train), "test": FrameTable(test)},
        {
            "train": enc.transform_table(FrameTable(train)),
            "test": enc.transform_table(FrameTable(test)),
        },
    )
    assert report["splits"]["train"]["id0_share"]["u"] == 0.0
    assert report["splits"]["test"]["id0_share"]["u"] == 0.5
    assert report["splits"]["test"]["dense_nonfinite_filled"]["x"] == 2


def test_empty_train_is_an_error():
    with pytest.raises(EncoderError, match="empty train split"):
        fit(pd.DataFrame({"u": pd.Series([], dtype="int64")}))
