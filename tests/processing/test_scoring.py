"""Validation and bookkeeping of scoring inputs (mtl_reco.processing.scoring)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_reco.processing.config import EncodingConfig, RuleSeverities, ValidationConfig
from mtl_reco.processing.encoder import FeatureEncoder
from mtl_reco.processing.scoring import (
    ScoringError,
    ScoringInput,
    prepare_scoring,
    score_table,
    scoring_report,
    scoring_schema,
    unseen_counts,
)
from mtl_reco.tables import FrameTable, concat_chunks, write_parquet

from .conftest import TOY_SCHEMA, toy_frame

FEATURES = ["user", "item", "d1", "d2"]


def fitted_encoder(train: pd.DataFrame, min_count: int = 1) -> FeatureEncoder:
    return FeatureEncoder.fit(
        FrameTable(train),
        sparse=["user", "item"],
        dense=["d1", "d2"],
        config=EncodingConfig(min_count=min_count),
    )


def predict(encoded: pd.DataFrame) -> dict[str, np.ndarray]:
    """A stand-in model: the encoded user id as a score (checks row alignment)."""
    return {"ctr": encoded["user"].to_numpy(dtype=np.float32)}


def run_scoring(
    frame: pd.DataFrame,
    encoder: FeatureEncoder,
    *,
    validation: ValidationConfig | None = None,
    max_rejected_share: float = 0.5,
    chunk_rows: int = 16,
    keep: tuple[str, ...] = ("d1",),
):
    scoring = ScoringInput("toy", TOY_SCHEMA, FrameTable(frame), ("new_rows.parquet",))
    validator, stats = prepare_scoring(
        scoring,
        encoder,
        validation or ValidationConfig(),
        experiment="exp",
        max_rejected_share=max_rejected_share,
    )
    table = score_table(scoring, encoder, predict, validator, stats, keep)
    return (
        table,
        stats,
        (lambda: concat_chunks(table.iter_chunks(chunk_rows=chunk_rows))),
    )


def test_rows_with_inf_dense_and_negative_ids_are_rejected_and_counted():
    train = toy_frame(200, seed=1)
    encoder = fitted_encoder(train)
    frame = toy_frame(50, seed=2).drop(columns=["click", "purchase"])
    frame.loc[3, "d1"] = np.inf
    frame.loc[7, "d1"] = -np.inf
    frame.loc[7, "user"] = -5  # same row fails two rules: rejected once
    frame.loc[11, "d2"] = np.nan
    frame.loc[20, "item"] = -1
    frame.loc[33, "user"] = -2  # in the third chunk of 16 rows
    _, stats, consume = run_scoring(frame, encoder)
    scored = consume()

    # reference computed independently of Great Expectations
    bad = (
        ~np.isfinite(frame["d1"])
        | ~np.isfinite(frame["d2"])
        | (frame["user"] < 0)
        | (frame["item"] < 0)
    ).to_numpy()
    assert sorted(np.flatnonzero(bad)) == [3, 7, 11, 20, 33]
    assert scored["row"].tolist() == np.flatnonzero(~bad).tolist()
    kept = frame[~bad]
    np.testing.assert_array_equal(scored["d1"], kept["d1"])
    np.testing.assert_array_equal(
        scored["p_ctr"], encoder.transform(kept)["user"].astype(np.float32)
    )

    report = scoring_report(stats, rows_written=len(scored))
    assert report["rows_read"] == 50
    assert report["rows_scored"] == 45
    assert report["rows_rejected"] == 5
    assert report["rejected"]["by_rule"] == {"dense_finite": 3, "ids_non_negative": 3}
    assert report["rejected"]["first_rows"] == [3, 7, 11, 20, 33]
    checks = {c["check"]: c for c in report["checks"]}
    inf = checks["dense_finite:d1:expect_column_values_to_be_between"]
    assert (inf["unexpected_count"], inf["examples"], inf["first_rows"]) == (
        2,
        ["inf", "-inf"],
        [3, 7],
    )
    assert inf["action"] == "reject"
    assert checks["dense_finite:d2:expect_column_values_to_not_be_null"][
        "first_rows"
    ] == [11]
    user = checks["ids_non_negative:user:expect_column_values_to_be_between"]
    assert (user["unexpected_count"], user["examples"], user["first_rows"]) == (
        2,
        [-5, -2],
        [7, 33],
    )
    assert report["inputs"] == ["new_rows.parquet"]


def test_soft_rule_counts_rows_but_keeps_them():
    encoder = fitted_encoder(toy_frame(200, seed=1))
    frame = toy_frame(30, seed=2).drop(columns=["click", "purchase"])
    frame.loc[[4, 9], "d1"] = np.inf
    validation = ValidationConfig(rules=RuleSeverities(dense_finite="soft"))
    _, stats, consume = run_scoring(frame, encoder, validation=validation)
    scored = consume()
    assert scored["row"].tolist() == list(range(30))
    report = scoring_report(stats, rows_written=len(scored))
    assert report["rows_rejected"] == 0
    entry = next(
        c
        for c in report["checks"]
        if c["check"] == "dense_finite:d1:expect_column_values_to_be_between"
    )
    assert (entry["action"], entry["unexpected_count"], entry["first_rows"]) == (
        "keep",
        2,
        [4, 9],
    )


def test_label_rules_are_skipped_when_the_input_has_no_labels():
    encoder = fitted_encoder(toy_frame(200, seed=1))
    frame = toy_frame(40, seed=2).drop(columns=["click", "purchase", "t"])
    _, stats, consume = run_scoring(frame, encoder)
    scored = consume()
    report = scoring_report(stats, rows_written=len(scored))
    rules = {c["rule"] for c in report["checks"]}
    assert rules == {"dense_finite", "ids_non_negative"}
    assert report["label_rules"] == {
        "applied_to": [],
        "skipped_absent": ["click", "purchase"],
    }
    assert report["rows_scored"] == 40


def test_label_rules_apply_when_labels_are_present():
    encoder = fitted_encoder(toy_frame(200, seed=1))
    frame = toy_frame(40, seed=2)
    frame["click"] = frame["click"].astype("Int8")
    frame.loc[5, "click"] = 2  # labels_binary (hard): rejected
    frame.loc[6, "click"] = pd.NA  # labels_not_null (hard): rejected
    frame.loc[8, ["click", "purchase"]] = [0, 1]  # purchase_implies_click (soft)
    _, stats, consume = run_scoring(frame, encoder)
    scored = consume()
    assert 5 not in set(scored["row"]) and 6 not in set(scored["row"])
    assert 8 in set(scored["row"])
    report = scoring_report(stats, rows_written=len(scored))
    assert report["rejected"]["by_rule"] == {"labels_binary": 1, "labels_not_null": 1}
    funnel = next(c for c in report["checks"] if c["rule"] == "purchase_implies_click")
    assert (funnel["unexpected_count"], funnel["first_rows"]) == (1, [8])
    assert report["label_rules"]["applied_to"] == ["click", "purchase"]


def test_scoring_schema_keeps_only_present_labels_and_extras():
    schema = scoring_schema(TOY_SCHEMA, ["click", "user", "item", "d1", "d2"])
    assert schema.labels == ("click",)
    assert schema.extras == ()
    assert schema.funnel is None  # purchase absent: no funnel rule
    assert (schema.sparse, schema.dense) == (TOY_SCHEMA.sparse, TOY_SCHEMA.dense)


def test_unseen_rate_against_a_hand_computed_reference():
    train = pd.DataFrame(
        {
            "user": np.array([1, 1, 2, 2, 3, 7, 7], dtype=np.int64),
            "item": np.array([5, 5, 5, 6, 6, 6, 6], dtype=np.int64),
            "d1": np.arange(7.0),
            "d2": np.ones(7),
        }
    )
    encoder = fitted_encoder(train, min_count=2)  # user vocab {1, 2, 7}; 3 is rare
    new = pd.DataFrame(
        {
            "user": pd.array([1, 3, 4, None, 2, 9, 7, 1], dtype="Int64"),
            "item": np.array([5, 6, 5, 6, 8, 5, 6, 5], dtype=np.int64),
            "d1": np.zeros(8),
            "d2": np.zeros(8),
        }
    )
    # by hand: user 3 (rare), 4 and 9 (never seen) are unseen; one missing
    # value is not; item 8 is the only unseen item
    encoded = encoder.transform(new)
    assert unseen_counts(encoder, new, encoded) == {"user": (3, 1), "item": (1, 0)}

    _, stats, consume = run_scoring(new, encoder, chunk_rows=3)
    scored = consume()
    report = scoring_report(stats, rows_written=len(scored))
    assert report["unseen_ids"]["user"] == {
        "unseen_rows": 3,
        "missing_rows": 1,
        "rate": 3 / 8,
    }
    assert report["unseen_ids"]["item"]["rate"] == 1 / 8


def test_unseen_rate_counts_scored_rows_only():
    train = toy_frame(200, seed=1)
    encoder = fitted_encoder(train)
    frame = toy_frame(20, seed=2).drop(columns=["click", "purchase"])
    frame.loc[[0, 1, 2], "item"] = 10_000  # unseen, scored
    frame.loc[3, "item"] = 10_000
    frame.loc[3, "d1"] = np.inf  # unseen but rejected: not counted
    _, stats, consume = run_scoring(frame, encoder)
    report = scoring_report(stats, rows_written=len(consume()))
    known = set(encoder.sparse[1].values)
    kept = frame.drop(index=3)
    expected = int((~kept["item"].isin(known)).sum())
    assert expected >= 3  # the planted values, plus any item train never had
    assert report["unseen_ids"]["item"]["unseen_rows"] == expected
    assert report["unseen_ids"]["item"]["rate"] == expected / 19


def test_too_many_rejected_rows_fail_at_the_end_and_write_nothing(tmp_path):
    encoder = fitted_encoder(toy_frame(200, seed=1))
    frame = toy_frame(40, seed=2).drop(columns=["click", "purchase"])
    frame.loc[0:9, "user"] = -1
    frame.loc[20, "d2"] = np.inf
    table, stats, _ = run_scoring(frame, encoder, max_rejected_share=0.2)
    target = tmp_path / "scores.parquet"
    with pytest.raises(ScoringError) as err:
        write_parquet(table, target, chunk_rows=16)
    message = str(err.value)
    assert "new_rows.parquet" in message
    assert "11 of 40 rows" in message
    assert "dense_finite 1" in message and "ids_non_negative 10" in message
    assert "on column 'user': 10 rows negative" in message
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # temporary file removed too
    with pytest.raises(ScoringError, match="max_rejected_share"):
        scoring_report(stats)


def test_share_at_the_limit_passes():
    encoder = fitted_encoder(toy_frame(200, seed=1))
    frame = toy_frame(40, seed=2).drop(columns=["click", "purchase"])
    frame.loc[0:3, "user"] = -1  # 4 of 40 = 0.1
    _, stats, consume = run_scoring(frame, encoder, max_rejected_share=0.1)
    assert len(consume()) == 36
    assert scoring_report(stats)["rejected"]["share"] == pytest.approx(0.1)


def test_every_row_rejected_is_an_error_even_when_allowed():
    encoder = fitted_encoder(toy_frame(200, seed=1))
    frame = toy_frame(10, seed=2).drop(columns=["click", "purchase"])
    frame["d1"] = np.inf
    _, _, consume = run_scoring(frame, encoder, max_rejected_share=1.0)
    with pytest.raises(ScoringError, match=r"no row .*passed validation"):
        consume()


def test_an_input_without_rows_names_the_file():
    encoder = fitted_encoder(toy_frame(200, seed=1))
    empty = toy_frame(10).iloc[:0]
    with pytest.raises(ScoringError, match=r"new_rows\.parquet.*no rows"):
        run_scoring(empty, encoder)


def test_missing_feature_column_fails_before_scoring_naming_file_and_column():
    encoder = fitted_encoder(toy_frame(200, seed=1))
    frame = toy_frame(10).drop(columns=["d2"])
    with pytest.raises(ScoringError) as err:
        run_scoring(frame, encoder)
    assert "new_rows.parquet" in str(err.value)
    assert "column 'd2'" in str(err.value)


def test_non_numeric_dense_column_fails_naming_file_and_column():
    encoder = fitted_encoder(toy_frame(200, seed=1))
    frame = toy_frame(10)
    frame["d1"] = frame["d1"].astype(str)
    with pytest.raises(ScoringError) as err:
        run_scoring(frame, encoder)
    assert "new_rows.parquet" in str(err.value)
    assert "column 'd1'" in str(err.value) and "not numeric" in str(err.value)


def test_encoder_feature_missing_from_the_schema_is_reported():
    train = toy_frame(200, seed=1)
    train["extra_feature"] = 1.0
    encoder = FeatureEncoder.fit(
        FrameTable(train),
        sparse=["user", "item"],
        dense=["d1", "d2", "extra_feature"],
        config=EncodingConfig(min_count=1),
    )
    with pytest.raises(ScoringError, match="'extra_feature' needed by the fitted"):
        run_scoring(toy_frame(10), encoder)


def test_report_needs_a_complete_pass_and_matching_row_count():
    encoder = fitted_encoder(toy_frame(200, seed=1))
    frame = toy_frame(20, seed=2)
    _, stats, consume = run_scoring(frame, encoder)
    with pytest.raises(ScoringError, match="incomplete"):
        scoring_report(stats)
    scored = consume()
    with pytest.raises(ScoringError, match="were written"):
        scoring_report(stats, rows_written=len(scored) + 1)
    assert scoring_report(stats, rows_written=len(scored))["rows_scored"] == 20


def test_severities_off_skip_the_rule():
    encoder = fitted_encoder(toy_frame(200, seed=1))
    frame = toy_frame(20, seed=2).drop(columns=["click", "purchase"])
    frame.loc[2, "user"] = -3
    rules = RuleSeverities(ids_non_negative="off")
    _, stats, consume = run_scoring(
        frame, encoder, validation=ValidationConfig(rules=rules)
    )
    assert len(consume()) == 20
    report = scoring_report(stats)
    assert "ids_non_negative" not in {c["rule"] for c in report["checks"]}
    assert report["unseen_ids"]["user"]["unseen_rows"] == 1  # -3 maps to id 0
