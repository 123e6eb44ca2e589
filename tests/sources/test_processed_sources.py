"""The processed Ali-CCP and AliExpress CSV sources (real samples + edge cases).

Both are YAML descriptions (``mtl_reco/sources/formats``) read by the generic
processed-CSV reader.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl_reco.sources.base import SourceError
from mtl_reco.sources.registry import processed_format, read_source
from mtl_reco.tables import concat_chunks

ALI_CCP = "ali-ccp/torch-rechub/ali_ccp_{}_sample.csv"
SCENARIO = "ali-ccp/scenario-wise-rec/ali_ccp_{}_sample.csv"
ALIEXPRESS = "aliexpress/torch-rechub/aliexpress_{}_sample.csv"
ali_ccp = processed_format("ali_ccp")  # formats/ali_ccp.yml
aliexpress = processed_format("aliexpress")  # formats/aliexpress.yml


def _ali_ccp_options(root: Path, pattern: str = ALI_CCP) -> dict[str, str]:
    return {
        "train": str(root / pattern.format("train")),
        "valid": str(root / pattern.format("val")),
        "test": str(root / pattern.format("test")),
    }


def test_ali_ccp_sample_counts(shared_data: Path) -> None:
    schema, table = read_source("ali_ccp", _ali_ccp_options(shared_data))
    frame = concat_chunks(table.iter_chunks(chunk_rows=30))
    assert list(frame.columns) == schema.columns
    assert len(schema.columns) == 34 and schema.split_column == "split"
    assert len(schema.labels + schema.sparse + schema.dense) == 33
    assert schema.sparse == ali_ccp.sparse and schema.dense == ali_ccp.dense
    assert schema.funnel == ("click", "purchase")
    assert [(t.name, t.source) for t in schema.default_tasks] == [
        ("ctr", "click"),
        ("ctcvr", "click * purchase"),
    ]
    by_split = frame.groupby("split", sort=False)
    assert by_split.size().to_dict() == {"train": 100, "valid": 50, "test": 50}
    assert by_split["click"].sum().to_dict() == {"train": 7, "valid": 3, "test": 2}
    assert by_split["purchase"].sum().to_dict() == {"train": 1, "valid": 1, "test": 1}
    assert frame["click"].dtype == np.int8 and frame["purchase"].dtype == np.int8
    assert all(frame[c].dtype == np.int64 for c in schema.sparse)
    assert all(frame[c].dtype == np.float64 for c in schema.dense)
    assert frame["split"].dtype == "str"
    assert frame["D109_14"].iloc[0] == pytest.approx(0.4734)
    assert set(frame["301"].unique()) == {1}


def test_ali_ccp_scenario_copy_and_single_path(shared_data: Path) -> None:
    _, table = read_source("ali_ccp", _ali_ccp_options(shared_data, SCENARIO))
    frame = concat_chunks(table.iter_chunks())
    train = frame[frame["split"] == "train"]
    assert train["301"].value_counts().sort_index().to_dict() == {1: 69, 2: 19, 3: 12}
    assert int(frame.loc[frame["split"] == "test", "click"].sum()) == 6

    path = str(shared_data / ALI_CCP.format("train"))
    schema, table = read_source("ali_ccp", {"path": path})
    single = concat_chunks(table.iter_chunks())
    assert schema.split_column is None and "split" not in single.columns
    assert len(single) == 100 and len(single.columns) == 33
    # one per-split file alone is a single file too: no split column
    schema, _ = read_source("ali_ccp", {"train": path})
    assert schema.split_column is None


def test_aliexpress_sample_counts(shared_data: Path) -> None:
    options = {
        "train": str(shared_data / ALIEXPRESS.format("train")),
        "test": str(shared_data / ALIEXPRESS.format("test")),
    }
    schema, table = read_source("aliexpress", options)
    frame = concat_chunks(table.iter_chunks(chunk_rows=64))
    assert list(frame.columns) == schema.columns
    assert schema.labels == ("click", "conversion")
    assert schema.funnel == ("click", "conversion")
    assert schema.extras == ("search_id",)
    assert "search_id" not in schema.sparse + schema.dense
    assert schema.sparse == aliexpress.sparse and len(schema.sparse) == 16
    assert schema.dense == aliexpress.dense and len(schema.dense) == 63
    by_split = frame.groupby("split", sort=False)
    assert by_split.size().to_dict() == {"train": 100, "test": 20}
    assert by_split["click"].sum().to_dict() == {"train": 60, "test": 10}
    assert by_split["conversion"].sum().to_dict() == {"train": 2, "test": 2}
    assert frame["search_id"].dtype == np.int64
    assert frame["search_id"].iloc[0] == 81
    assert [t.source for t in schema.default_tasks] == ["click", "click * conversion"]


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


HEADER = ",".join(("click", "purchase", *ali_ccp.sparse, *ali_ccp.dense))


def _row(click: object, purchase: object, dense: object = 0.5) -> str:
    return ",".join([str(click), str(purchase)] + ["3"] * 23 + [str(dense)] * 8)


def test_header_only_file_gives_one_empty_typed_chunk(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.csv", HEADER + "\n")
    schema, table = read_source("ali_ccp", {"path": path})
    chunks = list(table.iter_chunks())
    assert len(chunks) == 1 and len(chunks[0]) == 0
    assert list(chunks[0].columns) == schema.columns
    assert chunks[0]["click"].dtype == np.int8
    assert chunks[0]["101"].dtype == np.int64
    assert chunks[0]["D508"].dtype == np.float64


def test_bad_labels_pass_through_for_validation(tmp_path: Path) -> None:
    text = "\n".join(
        [HEADER, _row(0, 0), _row(2, 0), _row(0, 1), _row("", 0), _row(1, 1, "")]
    )
    path = _write(tmp_path / "odd.csv", text + "\n")
    _, table = read_source("ali_ccp", {"path": path})
    first, second = list(table.iter_chunks(chunk_rows=3))
    assert first["click"].dtype == np.int8  # clean chunk: plain int8
    assert first["click"].tolist() == [0, 2, 0]  # label 2 kept
    assert first["purchase"].tolist() == [0, 0, 1]  # purchase without click kept
    assert second["click"].isna().tolist() == [True, False]  # missing kept missing
    assert str(second["click"].dtype) == "Int8"
    assert np.isnan(second["D508"].iloc[1])


def test_missing_column_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    header = HEADER.replace("purchase,", "")
    rows = [",".join(["0"] + ["3"] * 23 + ["0.5"] * 8)]
    path = _write(tmp_path / "nopurchase.csv", "\n".join([header, *rows]) + "\n")
    _, table = read_source("ali_ccp", {"path": path})
    with caplog.at_level(logging.WARNING):
        frame = concat_chunks(table.iter_chunks())
    assert "purchase" not in frame.columns and len(frame.columns) == 32
    assert "nopurchase.csv lacks column(s) ['purchase']" in caplog.text


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"not found: .*absent\.csv"):
        read_source("ali_ccp", {"train": str(tmp_path / "absent.csv"), "test": "x"})
    zero = tmp_path / "zero.csv"
    zero.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty \(0 bytes\): .*zero\.csv"):
        read_source("aliexpress", {"path": str(zero)})
    with pytest.raises(SourceError, match="not both"):
        read_source("ali_ccp", {"path": str(zero), "train": str(zero)})
    bad = _write(tmp_path / "ragged.csv", HEADER + "\n" + _row(0, 0) + ",9,9\n")
    _, table = read_source("ali_ccp", {"path": bad})
    with pytest.raises(SourceError, match=r"ragged\.csv.*line 2"):
        list(table.iter_chunks())


def test_chunked_equals_whole(shared_data: Path) -> None:
    _, table = read_source("ali_ccp", _ali_ccp_options(shared_data))
    whole = concat_chunks(table.iter_chunks())
    for rows in (3, 64):
        pd.testing.assert_frame_equal(
            concat_chunks(table.iter_chunks(chunk_rows=rows)), whole
        )


@pytest.mark.parametrize(
    ("column", "bad", "expected"),
    [
        ("121", "abc", "column '121': CSV conversion error to int64: invalid value"),
        ("D508", "x1", "column 'D508': CSV conversion error to double: invalid value"),
    ],
)
def test_non_numeric_value_names_the_column_file_and_line(
    tmp_path: Path, column: str, bad: str, expected: str
) -> None:
    # unknown extra columns before and after the format's columns shift the
    # physical position pyarrow reports ("column #N") away from the included one
    header = "row_id,note," + HEADER + ",trailer"
    names = header.split(",")
    rows = [",".join(["7", "free text", *_row(0, 0).split(","), "z"])] * 4
    cells = rows[2].split(",")
    cells[names.index(column)] = bad
    rows[2] = ",".join(cells)
    path = _write(tmp_path / "shifted.csv", "\n".join([header, *rows]) + "\n")
    _, table = read_source("ali_ccp", {"path": path})
    with pytest.raises(SourceError) as err:
        list(table.iter_chunks(chunk_rows=2))
    message = str(err.value)
    assert message == (f"ali_ccp: cannot read {path} line 4: {expected} '{bad}'")
