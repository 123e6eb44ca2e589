"""The streaming raw Ali-CCP parser on the hand-written fixture."""

from __future__ import annotations

import gzip
import importlib.util
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl_reco.sources import ali_ccp_raw
from mtl_reco.sources.base import SourceError
from mtl_reco.sources.registry import processed_format, read_source
from mtl_reco.tables import concat_chunks

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ali_ccp_raw"
NAMES = (
    "common_features_train.csv",
    "sample_skeleton_train.csv",
    "common_features_test.csv",
    "sample_skeleton_test.csv",
)


def _read(directory: Path = FIXTURE, chunk_rows: int = 1000, **options: object):
    schema, table = read_source("ali_ccp_raw", {"directory": str(directory), **options})
    return schema, concat_chunks(table.iter_chunks(chunk_rows=chunk_rows))


@pytest.fixture(scope="module")
def parsed() -> pd.DataFrame:
    return _read()[1]


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for name in NAMES:
        shutil.copy(FIXTURE / name, tmp_path / name)
    return tmp_path


def test_fixture_files_match_their_generator(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "ali_ccp_raw_make_fixture", FIXTURE / "make_fixture.py"
    )
    assert spec is not None and spec.loader is not None
    make_fixture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_fixture)
    for path in make_fixture.write(tmp_path):
        assert path.read_bytes() == (FIXTURE / path.name).read_bytes(), path.name


def test_same_columns_as_processed_ali_ccp(parsed: pd.DataFrame) -> None:
    ali_ccp = processed_format("ali_ccp")
    schema, _ = read_source("ali_ccp_raw", {"directory": str(FIXTURE)})
    assert schema.sparse == ali_ccp.sparse and schema.dense == ali_ccp.dense
    assert schema.labels == ("click", "purchase")
    assert schema.funnel == ("click", "purchase")
    assert schema.split_column == "split"
    assert list(parsed.columns) == [*ali_ccp.schema(True).columns]
    assert len(parsed) == 14
    assert parsed["click"].dtype == np.int8
    assert all(parsed[c].dtype == np.int64 for c in schema.sparse)
    assert all(parsed[c].dtype == np.float64 for c in schema.dense)


def test_join_and_multivalued_fields(parsed: pd.DataFrame) -> None:
    first = parsed.iloc[0]
    expected_ids = {
        "101": 1001,
        "121": 2001,
        "122": 2101,
        "124": 2201,
        "125": 2301,
        "126": 2401,
        "127": 2501,
        "128": 2601,
        "129": 2701,
        "205": 5001,
        "206": 5101,
        "207": 5201,
        "210": 5301,
        "216": 5401,
        "508": 6001,
        "509": 6101,
        "702": 0,  # missing field -> 0
        "853": 0,
        "301": 4001,
        "109_14": 3003,  # last of three entries
        "110_14": 3101,
        "127_14": 3202,  # last of two
        "150_14": 3301,
    }
    assert {k: int(first[k]) for k in expected_ids} == expected_ids
    expected_dense = {
        "D109_14": 1.386,  # value of the last 109_14 entry
        "D110_14": 0.693,
        "D127_14": 3.0,
        "D150_14": 4.0,
        "D508": 0.5,
        "D509": 1.2,
        "D702": 0.0,
        "D853": 0.0,
    }
    assert {k: float(first[k]) for k in expected_dense} == expected_dense
    second = parsed.iloc[1]  # two 508 entries on the skeleton line: last wins
    assert (second["508"], second["D508"]) == (6003, 0.9)
    assert (second["702"], second["D702"], second["853"], second["D853"]) == (
        6201,
        0.75,
        6301,
        2.0,
    )
    assert second["101"] == 1001 and second["109_14"] == 3003  # same user bundle
    third = parsed.iloc[2]
    assert (third["101"], third["124"], third["121"]) == (1002, 2202, 0)
    assert (third["109_14"], third["D109_14"]) == (3004, 2.5)


def test_skeleton_overrides_common_and_empty_list(parsed: pd.DataFrame) -> None:
    assert parsed["301"].iloc[4] == 4001  # skeleton 301 beats the common 4003
    sixth = parsed.iloc[5]  # empty feature list: only the common bundle
    assert (sixth["101"], sixth["301"], sixth["205"]) == (1003, 4003, 0)


def test_labels_kept_as_found(parsed: pd.DataFrame) -> None:
    train = parsed[parsed["split"] == "train"]
    assert train["click"].tolist() == [0, 1, 1, 0, 0, 0]
    assert train["purchase"].tolist() == [0, 0, 1, 1, 0, 0]  # row 4: noise kept


def test_splits_by_seeded_hash() -> None:
    _, frame = _read()
    assert frame["split"].iloc[:6].tolist() == ["train"] * 6
    test_part = frame["split"].iloc[6:].tolist()
    assert set(test_part) == {"valid", "test"}
    assert test_part == [
        "valid",
        "valid",
        "test",
        "test",
        "test",
        "test",
        "valid",
        "test",
    ]
    assert set(_read(test_valid_fraction=1.0)[1]["split"].iloc[6:]) == {"valid"}
    assert set(_read(test_valid_fraction=0.0)[1]["split"].iloc[6:]) == {"test"}
    other = [_read(seed=s)[1]["split"].iloc[6:].tolist() for s in range(1, 4)]
    assert any(o != test_part for o in other)
    fractions = ali_ccp_raw.hash_fraction(np.arange(20_000).astype(str), 7)
    assert abs(float((fractions < 0.5).mean()) - 0.5) < 0.02


def test_single_part_has_no_split(parsed: pd.DataFrame) -> None:
    schema, frame = _read(parts=["train"])
    assert schema.split_column is None and "split" not in frame.columns
    pd.testing.assert_frame_equal(
        frame, parsed.iloc[:6].drop(columns="split").reset_index(drop=True)
    )
    schema, frame = _read(parts=["test"])
    assert len(frame) == 8 and schema.split_column is None


def test_chunking_and_small_blocks(
    parsed: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    for rows in (1, 4, 7):
        pd.testing.assert_frame_equal(_read(chunk_rows=rows)[1], parsed)
    monkeypatch.setattr(ali_ccp_raw, "BLOCK_BYTES", 512)  # several blocks per file
    pd.testing.assert_frame_equal(_read(chunk_rows=3)[1], parsed)


def test_gzip_input(copy: Path, parsed: pd.DataFrame) -> None:
    skeleton = copy / "sample_skeleton_train.csv"
    with gzip.open(copy / "sample_skeleton_train.csv.gz", "wb") as out:
        out.write(skeleton.read_bytes())
    skeleton.unlink()
    pd.testing.assert_frame_equal(_read(copy)[1], parsed)


def test_missing_common_row(
    copy: Path, parsed: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    common = copy / "common_features_train.csv"
    lines = common.read_text().splitlines(keepends=True)
    common.write_text("".join(lines[:2]))  # drop the bundle of 9f2a6c1e00000003
    with pytest.raises(
        SourceError,
        match=r"sample_skeleton_train\.csv line 5: common_feature_index "
        r"'9f2a6c1e00000003' has no row in .*common_features_train\.csv",
    ):
        _read(copy)
    with caplog.at_level(logging.WARNING):
        _, frame = _read(copy, on_missing_common="zero")
    assert "2 skeleton row(s)" in caplog.text
    assert frame["101"].iloc[4:6].tolist() == [0, 0]
    assert frame["301"].iloc[4:6].tolist() == [4001, 0]  # skeleton features kept
    assert frame["205"].iloc[4] == 5004
    pd.testing.assert_frame_equal(frame.iloc[:4], parsed.iloc[:4])


@pytest.mark.parametrize("block_bytes", [512, ali_ccp_raw.BLOCK_BYTES])
def test_wrong_field_count_names_file_and_line(
    copy: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    monkeypatch.setattr(ali_ccp_raw, "BLOCK_BYTES", block_bytes)
    skeleton = copy / "sample_skeleton_train.csv"
    lines = skeleton.read_text().splitlines(keepends=True)
    lines[4] = lines[4].rstrip("\n") + ",extra\n"
    skeleton.write_text("".join(lines))
    with pytest.raises(SourceError, match=r"sample_skeleton_train\.csv line 5"):
        _read(copy)
    lines[4] = "5,0,0\n"
    skeleton.write_text("".join(lines))
    with pytest.raises(SourceError, match=r"sample_skeleton_train\.csv line 5"):
        _read(copy)


def test_malformed_feature_names_line(copy: Path) -> None:
    skeleton = copy / "sample_skeleton_test.csv"
    lines = skeleton.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace("\x02", ":")
    skeleton.write_text("".join(lines))
    with pytest.raises(
        SourceError, match=r"sample_skeleton_test\.csv line 3: malformed feature"
    ):
        _read(copy)
    lines[2] = lines[2].replace(":", "\x02").replace("\x025103", "\x02abc")
    skeleton.write_text("".join(lines))
    with pytest.raises(
        SourceError,
        match=r"sample_skeleton_test\.csv line 3: feature id 'abc' is not a number",
    ):
        _read(copy)
    lines[2] = lines[2].replace("205\x02abc", "999\x02abc")  # ignored field
    skeleton.write_text("".join(lines))
    assert _read(copy)[1]["205"].iloc[8] == 0


def test_feature_num_mismatch_only_warns(
    copy: Path, parsed: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    skeleton = copy / "sample_skeleton_train.csv"
    text = skeleton.read_text().replace(",9f2a6c1e00000002,1,", ",9f2a6c1e00000002,3,")
    skeleton.write_text(text)
    with caplog.at_level(logging.WARNING):
        _, frame = _read(copy)
    assert "feature_num differs" in caplog.text and "line 4" in caplog.text
    pd.testing.assert_frame_equal(frame, parsed)


def test_missing_and_empty_files(copy: Path) -> None:
    (copy / "common_features_test.csv").unlink()
    with pytest.raises(SourceError, match=r"not found: .*common_features_test\.csv"):
        read_source("ali_ccp_raw", {"directory": str(copy)})
    read_source("ali_ccp_raw", {"directory": str(copy), "parts": ["train"]})
    (copy / "sample_skeleton_train.csv").write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty \(0 bytes\): .*skeleton_train"):
        read_source("ali_ccp_raw", {"directory": str(copy), "parts": ["train"]})
    with pytest.raises(SourceError, match="directory not found"):
        read_source("ali_ccp_raw", {"directory": str(copy / "nope")})
    with pytest.raises(SourceError, match="set `directory`"):
        read_source("ali_ccp_raw")
