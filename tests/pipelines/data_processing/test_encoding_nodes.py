"""The encoding nodes: an empty train split is named by its file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mtl_reco.pipelines.data_processing.encoding.nodes import fit_encoder
from mtl_reco.processing.config import EncodingConfig
from mtl_reco.processing.encoder import EncoderError
from mtl_reco.tables import FrameTable, ParquetTable

TASK_SPEC = {
    "sparse": ["user"],
    "dense": ["d1"],
    "tasks": [{"name": "ctr"}],
    "extras": [],
}


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ctr": [0.0, 1.0] * (n // 2),
            "user": list(range(n)),
            "d1": [0.5] * n,
        }
    )


def test_empty_parquet_train_split_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "03_primary" / "train.parquet"
    path.parent.mkdir()
    _frame(4).iloc[:0].to_parquet(path)
    with pytest.raises(EncoderError) as err:
        fit_encoder(ParquetTable(path), TASK_SPEC, EncodingConfig())
    assert str(err.value) == (
        f"cannot fit the feature encoder on an empty train split ({path} has 0 rows)"
    )


def test_non_empty_train_split_is_fitted(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    _frame(4).to_parquet(path)
    fitted = fit_encoder(ParquetTable(path), TASK_SPEC, EncodingConfig(min_count=1))
    assert fitted == fit_encoder(
        FrameTable(_frame(4)), TASK_SPEC, EncodingConfig(min_count=1)
    )


def test_empty_in_memory_train_split_keeps_the_library_message() -> None:
    with pytest.raises(EncoderError, match=r"empty train split$"):
        fit_encoder(FrameTable(_frame(4).iloc[:0]), TASK_SPEC, EncodingConfig())
