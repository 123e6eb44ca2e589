"""TensorTable: conversion from frames, batching, subsets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mtl_reco.modeling.data import TensorTable, tables_from_frames
from mtl_reco.schema import FeatureSchema, SchemaError


@pytest.fixture
def small_table(planted_frames, tiny_schema) -> TensorTable:
    return TensorTable.from_frame(planted_frames["valid"].iloc[:103], tiny_schema)


def test_from_frame_dtypes_shapes_and_values(planted_frames, tiny_schema):
    frame = planted_frames["valid"].iloc[:50]
    table = TensorTable.from_frame(frame, tiny_schema)
    assert len(table) == 50
    assert table.sparse.shape == (50, 3) and table.sparse.dtype == torch.int32
    assert table.dense.shape == (50, 3) and table.dense.dtype == torch.float32
    assert table.labels.shape == (50, 2) and table.labels.dtype == torch.float32
    assert table.sparse.is_contiguous() and table.dense.is_contiguous()
    assert table.task_names == ("ctr", "ctcvr")
    np.testing.assert_array_equal(table.sparse[:, 1].numpy(), frame["item"].to_numpy())
    np.testing.assert_allclose(table.dense[:, 2].numpy(), frame["d2"].to_numpy())
    np.testing.assert_array_equal(table.label("ctcvr").numpy(), frame["ctcvr"])
    assert set(table.extras) == {"true_pctr", "true_pcvr", "true_pctcvr"}
    assert table.labels_dict()["ctr"].shape == (50,)


def test_from_frame_missing_columns_are_named(planted_frames, tiny_schema):
    frame = planted_frames["valid"].drop(columns=["item", "ctcvr"])
    with pytest.raises(SchemaError, match=r"\['item', 'ctcvr'\]"):
        TensorTable.from_frame(frame, tiny_schema)


def test_from_frame_unlabelled_scoring(planted_frames, tiny_schema):
    frame = planted_frames["valid"].drop(columns=["ctr", "ctcvr"])
    table = TensorTable.from_frame(frame, tiny_schema, tasks=[])
    assert table.labels.shape == (len(frame), 0)
    assert table.task_names == ()


def test_row_count_mismatch_rejected():
    with pytest.raises(SchemaError, match="row counts differ"):
        TensorTable(
            sparse=torch.zeros(4, 2, dtype=torch.int32),
            dense=torch.zeros(3, 1),
            labels=torch.zeros(4, 1),
            task_names=("a",),
        )


def test_label_count_mismatch_rejected():
    with pytest.raises(SchemaError, match="label columns"):
        TensorTable(
            sparse=torch.zeros(4, 2, dtype=torch.int32),
            dense=torch.zeros(4, 1),
            labels=torch.zeros(4, 2),
            task_names=("a",),
        )


def test_ordered_batches_are_slices_covering_all_rows(small_table):
    batches = list(small_table.batches(20))
    assert [len(b.sparse) for b in batches] == [20, 20, 20, 20, 20, 3]
    assert small_table.num_batches(20) == 6
    torch.testing.assert_close(torch.cat([b.dense for b in batches]), small_table.dense)
    # unshuffled batches are views of the table (no copy)
    assert batches[0].sparse.data_ptr() == small_table.sparse.data_ptr()


def test_shuffled_batches_cover_every_row_exactly_once(small_table):
    # rows are identified by their dense values (continuous, hence distinct)
    gen = torch.Generator().manual_seed(5)
    seen = torch.cat(
        [b.dense[:, 0] for b in small_table.batches(16, shuffle=True, generator=gen)]
    )
    assert seen.shape == (103,)
    assert torch.equal(seen.sort().values, small_table.dense[:, 0].sort().values)
    assert not torch.equal(seen, small_table.dense[:, 0])  # actually shuffled


def test_shuffled_batches_keep_rows_aligned(small_table):
    gen = torch.Generator().manual_seed(0)
    for batch in small_table.batches(32, shuffle=True, generator=gen):
        for k in range(len(batch.dense)):
            row = int(torch.nonzero(small_table.dense[:, 0] == batch.dense[k, 0])[0])
            assert torch.equal(small_table.sparse[row], batch.sparse[k])
            assert torch.equal(small_table.labels[row], batch.labels[k])


def test_seeded_shuffle_is_reproducible(small_table):
    def order(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.cat(
            [
                b.dense[:, 0]
                for b in small_table.batches(10, shuffle=True, generator=gen)
            ]
        )

    assert torch.equal(order(11), order(11))
    assert not torch.equal(order(11), order(12))


def test_drop_last(small_table):
    sizes = [len(b.labels) for b in small_table.batches(20, drop_last=True)]
    assert sizes == [20] * 5
    assert small_table.num_batches(20, drop_last=True) == 5
    gen = torch.Generator().manual_seed(1)
    shuffled = list(
        small_table.batches(20, shuffle=True, generator=gen, drop_last=True)
    )
    assert [len(b.labels) for b in shuffled] == [20] * 5
    # exact multiple: nothing dropped
    assert small_table.num_batches(103, drop_last=True) == 1


def test_batch_size_must_be_positive(small_table):
    with pytest.raises(ValueError, match="batch_size"):
        next(small_table.batches(0))


def test_subset_by_index_and_mask(small_table):
    idx = torch.tensor([5, 0, 7])
    sub = small_table.subset(idx)
    assert len(sub) == 3
    assert torch.equal(sub.sparse, small_table.sparse[idx])
    np.testing.assert_array_equal(
        sub.extras["true_pctr"], small_table.extras["true_pctr"][[5, 0, 7]]
    )
    mask = small_table.labels[:, 0] == 1
    clicked = small_table.subset(mask)
    assert len(clicked) == int(mask.sum())
    assert bool((clicked.label("ctr") == 1).all())
    assert torch.equal(small_table.subset(mask.numpy()).dense, clicked.dense)


def test_to_same_device_and_tables_from_frames(planted_frames, tiny_schema):
    tables = tables_from_frames(
        {"a": planted_frames["valid"].iloc[:10], "b": planted_frames["test"].iloc[:7]},
        tiny_schema,
    )
    assert {k: len(v) for k, v in tables.items()} == {"a": 10, "b": 7}
    moved = tables["a"].to("cpu")
    assert moved.device.type == "cpu"
    assert torch.equal(moved.sparse, tables["a"].sparse)


def test_from_frame_casts_float_ids_and_int_dense(tiny_schema: FeatureSchema):
    frame = pd.DataFrame(
        {
            "user": [1.0, 2.0],
            "item": [3, 4],
            "cat": [0, 1],
            "d0": [1, 2],
            "d1": [0.5, 0.25],
            "d2": [0, 0],
            "ctr": [1, 0],
            "ctcvr": [0, 0],
        }
    )
    table = TensorTable.from_frame(frame, tiny_schema)
    assert table.sparse.tolist() == [[1, 3, 0], [2, 4, 1]]
    assert table.dense.dtype == torch.float32
    assert table.extras == {}
