"""A processed-CSV source is one YAML description of its columns and labels.

The built-in ones (``mtl_reco/sources/formats/*.yml``) name exactly the columns
of the real files; a throw-away description registered from a temporary
folder is read, recorded and validated like them; a description that breaks
a rule fails in one line naming the file, the key and the rule.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from mtl_reco.processing.config import LabelsConfig, ValidationConfig
from mtl_reco.processing.ingestion import open_source
from mtl_reco.processing.labels import plan_labels
from mtl_reco.processing.validation import failure_message, validate_table
from mtl_reco.sources import registry
from mtl_reco.sources._processed import load_format
from mtl_reco.sources.base import SourceError
from mtl_reco.sources.formats import builtin_format_files
from mtl_reco.sources.registry import options_class, processed_format, read_source
from mtl_reco.tables import concat_chunks
from mtl_reco.typed_config import ConfigError

SAMPLES = {
    "ali_ccp": "ali-ccp/torch-rechub/ali_ccp_train_sample.csv",
    "aliexpress": "aliexpress/torch-rechub/aliexpress_train_sample.csv",
}

TOY = """\
description: a toy view -> share funnel
labels: [view, share]
sparse: [user, item_1..2]
dense: score
extras: [ts]
funnel: [view, share]
default_tasks:
  - {name: vtr, source: view}
  - {name: vsr, source: view * share}
"""
TOY_HEADER = "view,share,user,item_1,item_2,score,ts,note"


@pytest.mark.parametrize("name", sorted(builtin_format_files()))
def test_built_in_descriptions_load(name):
    fmt = processed_format(name)
    assert fmt == load_format(builtin_format_files()[name])
    assert fmt.source == name and fmt.labels and (fmt.sparse or fmt.dense)
    assert options_class(name).__name__ == f"{fmt.title}Options"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_built_in_descriptions_name_the_columns_of_the_real_files(name, shared_data):
    with open(shared_data / SAMPLES[name], newline="") as handle:
        header = next(csv.reader(handle))
    fmt = processed_format(name)
    assert sorted(header) == sorted(fmt.labels + fmt.sparse + fmt.dense + fmt.extras)


def test_the_built_in_column_layouts():
    ali_ccp = processed_format("ali_ccp")
    assert (len(ali_ccp.labels), len(ali_ccp.sparse), len(ali_ccp.dense)) == (2, 23, 8)
    assert ali_ccp.sparse[:2] == ("101", "121") and ali_ccp.sparse[-1] == "150_14"
    assert ali_ccp.dense == tuple(
        f"D{f}" for f in ("109_14", "110_14", "127_14", "150_14", 508, 509, 702, 853)
    )
    aliexpress = processed_format("aliexpress")
    assert aliexpress.sparse == tuple(f"categorical_{i}" for i in range(1, 17))
    assert aliexpress.dense == tuple(f"numerical_{i}" for i in range(1, 64))
    assert aliexpress.extras == ("search_id",)
    assert options_class("aliexpress").__name__ == "AliExpressOptions"


@pytest.fixture
def toy_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``toy_share``: a description in a temporary folder, registered for one test."""
    monkeypatch.setattr(registry, "_SOURCES", dict(registry._SOURCES))
    path = tmp_path / "formats" / "toy_share.yml"
    path.parent.mkdir()
    path.write_text(TOY)
    return registry.register_format(path)


def _csv(path: Path, rows: list[str]) -> str:
    path.write_text("\n".join([TOY_HEADER, *rows]) + "\n")
    return str(path)


def test_a_described_format_is_read_and_validated_like_the_built_in_ones(
    toy_source, tmp_path
):
    assert toy_source == "toy_share" and "toy_share" in registry.file_sources()
    files = {
        "train": _csv(
            tmp_path / "train.csv",
            ["1,0,7,3,4,0.5,100,a", "1,1,8,3,5,0.25,101,b", "0,0,9,2,4,1.5,102,c"],
        ),
        "test": _csv(
            tmp_path / "test.csv", ["0,1,7,1,1,0.5,103,d", "2,0,8,1,1,,104,e"]
        ),
    }
    schema, table, record = open_source(toy_source, files)
    assert schema.source == "toy_share"
    assert schema.labels == ("view", "share")
    assert schema.sparse == ("user", "item_1", "item_2")
    assert schema.dense == ("score",) and schema.extras == ("ts",)
    assert schema.funnel == ("view", "share") and schema.split_column == "split"
    assert [(t.name, t.source) for t in schema.default_tasks] == [
        ("vtr", "view"),
        ("vsr", "view * share"),
    ]
    assert record["input_splits"] == files
    assert record["options"] == {"path": None, "valid": None, **files}
    frame = concat_chunks(table.iter_chunks(chunk_rows=2))
    assert list(frame.columns) == schema.columns  # the unknown 'note' is dropped
    assert frame["split"].tolist() == ["train"] * 3 + ["test"] * 2
    assert frame["user"].dtype == np.int64 and frame["ts"].dtype == np.int64
    assert frame["score"].dtype == np.float64
    plan = plan_labels(schema, LabelsConfig())
    assert [t.name for t in plan.tasks] == ["vtr", "vsr"]
    # the validation suite of every source: a label of 2, a share without a
    # view and a missing dense value are found and named
    report = validate_table(
        table,
        schema,
        ValidationConfig(),
        inputs=record["inputs"],
        input_splits=record["input_splits"],
    )
    assert report["suite"]["name"] == "raw_events.toy_share"
    failed = {c["rule"] for c in report["checks"] if not c["success"]}
    assert failed == {"labels_binary", "purchase_implies_click", "dense_finite"}
    message = failure_message(report)
    assert "view" in message and "score" in message and "test.csv" in message
    # options and files are checked like any source's
    with pytest.raises(ConfigError, match=r"'trian' for ToyShareOptions.*'train'"):
        read_source(toy_source, {"trian": files["train"]})
    with pytest.raises(SourceError, match=r"^toy_share: .*absent\.csv"):
        read_source(toy_source, {"path": str(tmp_path / "absent.csv")})


def test_a_name_is_registered_once(toy_source, tmp_path):
    other = tmp_path / "toy_share.yml"
    other.write_text(TOY.replace("score", "value"))
    with pytest.raises(SourceError, match="'toy_share' is already registered"):
        registry.register_format(other)
    clash = tmp_path / "simulated.yml"
    clash.write_text(TOY)
    with pytest.raises(SourceError, match="'simulated' is already registered"):
        registry.register_format(clash)


BASE = "labels: [click, buy]\nsparse: [a]\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            BASE + "funnel: [click, sale]\n",
            "funnel names 'sale', which is not a label column (labels: click, buy)",
        ),
        (
            "labels: [click]\nsparse: [a, 109_14]\n",
            "sparse lists 10914, which is not a column name: quote column names "
            "that look like numbers",
        ),
        (BASE + "dense: [a]\n", "column 'a' is listed twice (sparse and dense)"),
        (BASE + "extras: [x, x]\n", "column 'x' is listed twice (extras)"),
        (BASE + "lables: [x]\n", "unknown key 'lables' for FormatDescription"),
        ("labels: [click]\n", "no feature column: list sparse and/or dense columns"),
        ("labels: [click]\nsparse: [f_3..1]\n", "sparse range 'f_3..1' counts down"),
        ("labels: [click]\ndense: [split]\n", "dense names the column 'split'"),
        ("- click\n- buy\n", "a format description is a mapping"),
        ("labels: [click\n", "cannot read the format description"),
        (
            BASE + "default_tasks: [{name: t, source: click}, {name: t, source: buy}]",
            "default task 't' is defined twice",
        ),
        (BASE + "default_tasks: [{name: t}]", "default_tasks"),
    ],
)
def test_a_bad_description_fails_in_one_line_naming_file_key_and_rule(
    tmp_path, text, message
):
    path = tmp_path / "bad_format.yml"
    path.write_text(text)
    with pytest.raises(SourceError) as err:
        load_format(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)
