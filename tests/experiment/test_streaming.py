"""Streaming training input: the same batches, rows and results as memory,
with bounded reads, a seeded shuffle and errors that surface."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from mtl_reco.experiment import loading
from mtl_reco.experiment.loading import load_split, load_tensor_table, resolve_data_mode
from mtl_reco.experiment.nodes import evaluate_experiment, train_model
from mtl_reco.experiment.streaming import RowBlocks, StreamingTable, shard_rows
from mtl_reco.modeling.config import ConfigError, TrainerConfig
from mtl_reco.modeling.evaluation import evaluate_model
from mtl_reco.modeling.models.registry import ModelSpec
from mtl_reco.modeling.weighting.registry import WeightingSpec
from mtl_reco.tables import FrameTable, ParquetTable, write_parquet

from .test_nodes import TRAINER, _frame, _schema

MODEL = ModelSpec.from_dict(
    {"name": "mmoe", "params": {"n_experts": 2, "expert_dims": [8], "tower_dims": [4]}}
)
FIXED = WeightingSpec.from_dict({"name": "fixed"})


def _parquet(
    tmp_path, n: int, seed: int, rows_per_group: int, name: str, numbered: bool = True
):
    frame = _frame(n, seed)
    if numbered:  # the row's number as the dense input, to follow rows
        frame["D508"] = np.arange(n, dtype=np.float32)
    path = tmp_path / f"{name}.parquet"
    write_parquet(frame, path, chunk_rows=rows_per_group)
    return ParquetTable(path), frame


def _rows_of(batches) -> np.ndarray:
    return np.concatenate([b.dense[:, 0].numpy() for b in batches]).astype(int)


def test_unshuffled_stream_yields_the_memory_batches(tmp_path):
    table, _ = _parquet(tmp_path, 1000, 1, 300, "t")
    schema = _schema()
    stream = StreamingTable(table, schema, buffer_rows=250, prefetch=2)
    memory = load_tensor_table(table, schema)
    assert len(RowBlocks(table).sizes) == 4
    got, want = list(stream.batches(128)), list(memory.batches(128))
    assert len(got) == len(want) == stream.num_batches(128) == 8
    for a, b in zip(got, want, strict=True):
        for x, y in zip(a, b, strict=True):
            assert x.dtype == y.dtype
            assert torch.equal(x, y)
    assert {k: v.tolist() for k, v in stream.labels_dict().items()} == {
        k: v.tolist() for k, v in memory.labels_dict().items()
    }
    assert sorted(stream.extras) == sorted(memory.extras)
    for key, values in memory.extras.items():
        np.testing.assert_array_equal(stream.extras[key], values)


def test_shuffled_epochs_cover_every_row_once_in_seeded_orders(tmp_path):
    table, _ = _parquet(tmp_path, 1003, 2, 100, "t")
    stream = StreamingTable(table, _schema(), buffer_rows=250)
    gen = torch.Generator().manual_seed(5)
    epochs = [list(stream.batches(64, shuffle=True, generator=gen)) for _ in range(2)]
    for batches in epochs:
        assert len(batches) == stream.num_batches(64) == 16
        assert [len(b.labels) for b in batches[:-1]] == [64] * 15
        assert sorted(_rows_of(batches)) == list(range(1003))
    first, second = (_rows_of(b) for b in epochs)
    assert not np.array_equal(first, second)
    again = _rows_of(
        StreamingTable(table, _schema(), buffer_rows=250).batches(
            64, shuffle=True, generator=torch.Generator().manual_seed(5)
        )
    )
    np.testing.assert_array_equal(again, first)
    dropped = list(stream.batches(64, shuffle=True, generator=gen, drop_last=True))
    assert len(dropped) == stream.num_batches(64, drop_last=True) == 15
    assert all(len(b.labels) == 64 for b in dropped)


def test_the_stream_reads_no_further_ahead_than_its_buffer(tmp_path, monkeypatch):
    table, _ = _parquet(tmp_path, 2000, 3, 100, "t")
    stream = StreamingTable(table, _schema(), buffer_rows=300)
    reads = []
    original = RowBlocks.read

    def spy(self, piece, columns):
        reads.append(piece)
        return original(self, piece, columns)

    monkeypatch.setattr(RowBlocks, "read", spy)
    host = stream._host_batches(
        50, True, torch.Generator().manual_seed(1), False, False
    )
    first = next(host)
    # the first batch comes from the first buffer: 3 blocks of 100 rows
    assert len(reads) == 3
    assert set(first.dense[:, 0].numpy().astype(int) // 100) <= {p[0] for p in reads}
    list(host)
    assert len(reads) == 20


def test_a_read_error_in_the_background_thread_reaches_the_trainer(
    tmp_path, monkeypatch
):
    table, _ = _parquet(tmp_path, 1000, 4, 100, "t")
    stream = StreamingTable(table, _schema(), buffer_rows=100, prefetch=1)
    original = RowBlocks.read
    calls = {"n": 0}

    def failing(self, piece, columns):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk went away while reading row group 3")
        return original(self, piece, columns)

    monkeypatch.setattr(RowBlocks, "read", failing)
    seen = 0
    with pytest.raises(OSError, match="disk went away"):
        for _ in stream.batches(100):
            seen += 1
    assert seen == 3


def test_stopping_early_stops_the_reading_thread(tmp_path):
    table, _ = _parquet(tmp_path, 5000, 5, 100, "t")
    stream = StreamingTable(table, _schema(), buffer_rows=100, prefetch=2)
    before = threading.active_count()
    batches = stream.batches(10, shuffle=True, generator=torch.Generator())
    next(batches)
    batches.close()
    assert threading.active_count() == before
    assert not [t for t in threading.enumerate() if t.name == "mtl_reco-prefetch"]


def test_shards_are_equal_for_training_and_complete_for_evaluation():
    equal = [shard_rows(1003, r, 4, equal=True) for r in range(4)]
    assert equal == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    cover = [shard_rows(1003, r, 4, equal=False) for r in range(4)]
    assert cover[0][0] == 0 and cover[-1][1] == 1003
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cover))
    assert {b - a for a, b in cover} == {250, 251}
    with pytest.raises(ValueError, match="rank 4"):
        shard_rows(10, 4, 4, equal=True)


def test_a_shard_in_memory_holds_exactly_its_rows(tmp_path):
    table, frame = _parquet(tmp_path, 1000, 6, 128, "t")
    shard = load_tensor_table(table, _schema(), rows=(300, 700))
    assert shard.dense[:, 0].numpy().astype(int).tolist() == list(range(300, 700))
    np.testing.assert_array_equal(
        shard.extras["true_pctr"], frame["true_pctr"].to_numpy()[300:700]
    )
    streamed = StreamingTable(table, _schema(), rows=(300, 700))
    assert len(streamed) == 400
    assert _rows_of(streamed.batches(64)).tolist() == list(range(300, 700))


def test_auto_streams_when_the_splits_do_not_fit(tmp_path, monkeypatch):
    table, _ = _parquet(tmp_path, 1000, 7, 500, "t")
    schema = _schema()
    per_row = 4 * (3 + 1 + 2)
    monkeypatch.setattr(loading, "available_memory_bytes", lambda: 10**9)
    assert resolve_data_mode("auto", [table, table], schema) == "memory"
    tight = int(2000 * per_row / loading.MEMORY_SHARE) - 1
    monkeypatch.setattr(loading, "available_memory_bytes", lambda: tight)
    assert resolve_data_mode("auto", [table, table], schema) == "stream"
    assert resolve_data_mode("memory", [table], schema) == "memory"
    config = TrainerConfig(device="cpu")
    assert isinstance(
        load_split(table, schema, ["ctr"], config, "stream"), StreamingTable
    )


def test_one_block_streamed_trains_exactly_like_memory():
    train, valid = FrameTable(_frame(3000, 1)), FrameTable(_frame(1000, 2))
    states = {}
    for mode in ("memory", "stream"):
        cfg = TrainerConfig.from_dict({**TRAINER.to_dict(), "data": mode})
        states[mode], _, history = train_model(
            train, valid, _schema().to_dict(), MODEL, FIXED, cfg
        )
        assert history["epochs_run"] == 3
    for key, value in states["memory"].items():
        assert torch.equal(value, states["stream"][key]), key


def test_streamed_training_and_evaluation_match_memory(tmp_path):
    train, _ = _parquet(tmp_path, 12000, 1, 1000, "train", numbered=False)
    valid, _ = _parquet(tmp_path, 3000, 2, 1000, "valid", numbered=False)
    test, _ = _parquet(tmp_path, 3000, 3, 1000, "test", numbered=False)
    schema = _schema().to_dict()
    outcome = {}
    for mode in ("memory", "stream"):
        cfg = TrainerConfig.from_dict(
            {**TRAINER.to_dict(), "data": mode, "stream_buffer_rows": 2500}
        )
        state, spec, history = train_model(train, valid, schema, MODEL, FIXED, cfg)
        metrics, predictions, _ = evaluate_experiment(
            state,
            spec,
            valid,
            test,
            history,
            cfg,
            evaluation_config(),
        )
        outcome[mode] = (state, spec, metrics, predictions)
    memory_auc = outcome["memory"][2]["test"]["tasks"]["ctr"]["auc"]
    stream_auc = outcome["stream"][2]["test"]["tasks"]["ctr"]["auc"]
    assert memory_auc > 0.7
    assert abs(stream_auc - memory_auc) < 0.01  # different shuffles, same quality
    # evaluation reads rows in order: the stream scores one model as memory does
    state, spec = outcome["stream"][0], outcome["stream"][1]
    cfg = TrainerConfig.from_dict({**TRAINER.to_dict(), "data": "memory"})
    metrics, predictions, _ = evaluate_experiment(
        state, spec, valid, test, {"epochs": []}, cfg, evaluation_config()
    )
    pd.testing.assert_frame_equal(predictions, outcome["stream"][3])
    assert metrics["test"] == outcome["stream"][2]["test"]


def test_streamed_evaluation_equals_memory_evaluation(tmp_path):
    table, _ = _parquet(tmp_path, 2000, 8, 300, "t")
    schema = _schema()
    from mtl_reco.modeling.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("mmoe", schema, None, MODEL.build_config())
    a = evaluate_model(model, load_tensor_table(table, schema), batch_size=256)
    b = evaluate_model(model, StreamingTable(table, schema), batch_size=256)
    assert a == b


def test_settings_data_parallel_cannot_honour_fail_before_the_run():
    with pytest.raises(ConfigError, match="multiple of the number of ranks, 3"):
        TrainerConfig(batch_size=512, distributed={"nproc_per_node": 3})
    with pytest.raises(ConfigError, match="compile is not supported"):
        TrainerConfig(compile=True, distributed={"nproc_per_node": 2})
    with pytest.raises(ConfigError, match="rdzv_endpoint"):
        TrainerConfig(distributed={"nnodes": 2})
    with pytest.raises(ConfigError, match="data"):
        TrainerConfig(data="disk")


def evaluation_config():
    from mtl_reco.experiment.config import EvaluationConfig

    return EvaluationConfig(group_column=None, batch_size=512)


def test_a_long_epoch_without_a_terminal_logs_its_progress(monkeypatch, caplog):
    from mtl_reco.modeling import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "_PROGRESS_LOG_S", 0.0)
    train, valid = FrameTable(_frame(2048, 1)), FrameTable(_frame(512, 2))
    cfg = TrainerConfig.from_dict({**TRAINER.to_dict(), "epochs": 1, "progress": True})
    with caplog.at_level("INFO", logger="mtl_reco.modeling.trainer"):
        train_model(train, valid, _schema().to_dict(), MODEL, FIXED, cfg)
    lines = [r.getMessage() for r in caplog.records if "samples/s, about" in r.message]
    assert [line.split(",")[0] for line in lines] == [
        f"epoch 1/1: batch {b}/8 ({100 * b / 8:.0f} %)" for b in range(1, 9)
    ]


def test_max_batches_per_epoch_ends_each_epoch_early(tmp_path):
    table, _ = _parquet(tmp_path, 4000, 9, 500, "t", numbered=False)
    valid = FrameTable(_frame(500, 2))
    for mode in ("memory", "stream"):
        cfg = TrainerConfig.from_dict(
            {**TRAINER.to_dict(), "data": mode, "max_batches_per_epoch": 3}
        )
        _, _, history = train_model(
            table, valid, _schema().to_dict(), MODEL, FIXED, cfg
        )
        for epoch in history["epochs"]:
            seconds = epoch["epoch_time_s"]
            assert round(epoch["samples_per_s"] * seconds) == 3 * 256
    assert not [t for t in threading.enumerate() if t.name == "mtl_reco-prefetch"]
