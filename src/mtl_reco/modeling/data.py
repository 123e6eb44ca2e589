"""Encoded splits as contiguous tensors, sliced into batches.

No per-row ``Dataset.__getitem__`` and no collate: a split is held as three
contiguous tensors (sparse ids, dense values, labels) and a batch is one
``index_select`` per tensor (or a zero-copy slice when not shuffled). On CUDA
the gathered batch is pinned and copied asynchronously; a table that fits on
the GPU can be moved there once with :meth:`TensorTable.to`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

from mtl_reco.schema import FeatureSchema, SchemaError


class Batch(NamedTuple):
    """One mini-batch.

    Attributes:
        sparse: ``(B, n_sparse)`` integer ids in schema order.
        dense: ``(B, n_dense)`` float32 values in schema order.
        labels: ``(B, n_tasks)`` float32 labels in ``TensorTable.task_names`` order.
    """

    sparse: torch.Tensor
    dense: torch.Tensor
    labels: torch.Tensor


@runtime_checkable
class BatchSource(Protocol):
    """What the trainer and the evaluation read a split through.

    :class:`TensorTable` (a split in memory) is one; a reader that streams
    a split from disk is another (``mtl_reco.experiment.streaming``). Labels
    and extras (one small column each) are always available whole, since
    metrics need every row's label and score.
    """

    task_names: tuple[str, ...]

    def __len__(self) -> int: ...

    @property
    def extras(self) -> dict[str, np.ndarray]:
        """Passthrough columns (numpy arrays of length N), never inputs."""
        ...

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> Iterator[Batch]:
        """Yield the split's batches (seeded shuffle when ``shuffle``)."""
        ...

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches :meth:`batches` yields."""
        ...

    def labels_dict(self) -> dict[str, np.ndarray]:
        """Label columns as numpy arrays keyed by task name."""
        ...

    def fingerprint(self) -> str:
        """Content hash (equal for equal rows in the same order)."""
        ...


@dataclass
class TensorTable:
    """A whole encoded split held as contiguous tensors.

    Attributes:
        sparse: ``(N, n_sparse)`` int32 ids.
        dense: ``(N, n_dense)`` float32 values.
        labels: ``(N, n_tasks)`` float32 labels.
        task_names: Label column order.
        extras: Passthrough columns (numpy arrays of length N), never inputs.
    """

    sparse: torch.Tensor
    dense: torch.Tensor
    labels: torch.Tensor
    task_names: tuple[str, ...]
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.sparse.shape[0]
        if self.dense.shape[0] != n or self.labels.shape[0] != n:
            raise SchemaError(
                f"row counts differ: sparse {n}, dense {self.dense.shape[0]}, "
                f"labels {self.labels.shape[0]}"
            )
        if self.labels.shape[1] != len(self.task_names):
            raise SchemaError(
                f"{self.labels.shape[1]} label columns for tasks {self.task_names}"
            )

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        schema: FeatureSchema,
        tasks: Sequence[str] | None = None,
    ) -> TensorTable:
        """Build from an encoded DataFrame (columns named as in ``schema``).

        Args:
            frame: Encoded split (int ids, float dense, label columns).
            schema: Feature schema of the encoded data.
            tasks: Label columns to load (default: every task of the schema);
                missing label columns are an error (use ``tasks=[]`` to score
                unlabelled data).
        """
        task_names = tuple(schema.task_names if tasks is None else tasks)
        wanted = schema.sparse_names + schema.dense_names + list(task_names)
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"encoded table lacks columns required by the schema: {missing}"
            )
        n = len(frame)
        sparse = _stack(frame, schema.sparse_names, np.int32, n)
        dense = _stack(frame, schema.dense_names, np.float32, n)
        labels = _stack(frame, list(task_names), np.float32, n)
        extras = {c: frame[c].to_numpy() for c in schema.extras if c in frame.columns}
        return cls(
            sparse=torch.from_numpy(sparse),
            dense=torch.from_numpy(dense),
            labels=torch.from_numpy(labels),
            task_names=task_names,
            extras=extras,
        )

    def __len__(self) -> int:
        return int(self.sparse.shape[0])

    def fingerprint(self) -> str:
        """Content hash of the inputs and labels (BLAKE2b, hex).

        Equal for two tables with the same rows in the same order, dtypes,
        shapes and label names, wherever they were loaded from; used to
        resume training only on exactly the data a checkpoint was made with.
        Hashes the tensors in place (about 1 GB/s on one core).
        """
        digest = hashlib.blake2b(digest_size=16)
        digest.update(repr(self.task_names).encode())
        for tensor in (self.sparse, self.dense, self.labels):
            array = np.ascontiguousarray(tensor.detach().cpu().numpy())
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.reshape(-1).view(np.uint8).data)
        return digest.hexdigest()

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.sparse.device

    def to(self, device: torch.device | str) -> TensorTable:
        """Return a copy on ``device`` (labels and inputs; extras stay on host)."""
        return TensorTable(
            sparse=self.sparse.to(device),
            dense=self.dense.to(device),
            labels=self.labels.to(device),
            task_names=self.task_names,
            extras=self.extras,
        )

    def label(self, task: str) -> torch.Tensor:
        """Label column of ``task``."""
        return self.labels[:, self.task_names.index(task)]

    def labels_dict(self) -> dict[str, np.ndarray]:
        """Label columns as numpy arrays keyed by task name."""
        host = self.labels.cpu().numpy()
        return {t: host[:, i] for i, t in enumerate(self.task_names)}

    def subset(self, index: torch.Tensor | np.ndarray) -> TensorTable:
        """Rows selected by an index or boolean mask (extras included)."""
        idx = torch.as_tensor(index)
        if idx.dtype == torch.bool:
            idx = idx.nonzero(as_tuple=True)[0]
        host_idx = idx.cpu().numpy()
        dev_idx = idx.to(self.device)
        return TensorTable(
            sparse=self.sparse.index_select(0, dev_idx),
            dense=self.dense.index_select(0, dev_idx),
            labels=self.labels.index_select(0, dev_idx),
            task_names=self.task_names,
            extras={k: v[host_idx] for k, v in self.extras.items()},
        )

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> Iterator[Batch]:
        """Yield batches in order (slices) or shuffled (seeded ``generator``).

        Args:
            batch_size: Rows per batch.
            shuffle: Draw a fresh permutation with ``generator``.
            generator: Seeded CPU generator (reproducible shuffles).
            drop_last: Skip a last batch smaller than ``batch_size``.
            device: Where batches are delivered; CPU tables copied to CUDA go
                through pinned memory with non-blocking copies.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        target = torch.device(device) if device is not None else self.device
        to_cuda = target.type == "cuda" and self.device.type != "cuda"
        perm = None
        if shuffle:
            perm = torch.randperm(n, generator=generator).to(self.device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            end = min(start + batch_size, n)
            parts: tuple[torch.Tensor, ...]
            if perm is None:
                parts = (
                    self.sparse[start:end],
                    self.dense[start:end],
                    self.labels[start:end],
                )
            else:
                idx = perm[start:end]
                parts = (
                    self.sparse.index_select(0, idx),
                    self.dense.index_select(0, idx),
                    self.labels.index_select(0, idx),
                )
            if to_cuda:
                parts = tuple(
                    p.pin_memory().to(target, non_blocking=True) for p in parts
                )
            elif target != self.device:
                parts = tuple(p.to(target) for p in parts)
            yield Batch(*parts)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches :meth:`batches` yields."""
        return batch_count(len(self), batch_size, drop_last)


def batch_count(rows: int, batch_size: int, drop_last: bool = False) -> int:
    """Batches of ``batch_size`` that ``rows`` rows make (the last may be short)."""
    return rows // batch_size if drop_last else -(-rows // batch_size)


def _stack(
    frame: pd.DataFrame, columns: Sequence[str], dtype: type, n: int
) -> np.ndarray:
    """Columns of ``frame`` as one C-contiguous ``(n, len(columns))`` array."""
    out: np.ndarray = np.empty((n, len(columns)), dtype=dtype)
    for j, col in enumerate(columns):
        out[:, j] = frame[col].to_numpy(dtype=dtype, copy=False)
    return out


def tables_from_frames(
    frames: Mapping[str, pd.DataFrame], schema: FeatureSchema
) -> dict[str, TensorTable]:
    """Convert several encoded splits at once (``{"train": df, ...}``)."""
    return {name: TensorTable.from_frame(df, schema) for name, df in frames.items()}
