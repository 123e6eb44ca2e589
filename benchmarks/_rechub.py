"""Train Torch-RecHub 0.9.0's multi-task models on mtl_reco's encoded arrays.

This adapter only *calls* Torch-RecHub (the optional ``bench`` extra:
``pip install -e ".[bench]"``); none of its code is copied. It takes the
arrays mtl_reco's encoder produces - sparse ids ``(N, F)``, dense values
``(N, D)``, labels ``(N, T)`` - and uses Torch-RecHub the way its own
examples do (``examples/ranking/run_ali_ccp_multi_task.py``):

* one ``SparseFeature(name, vocab_size, embed_dim)`` per sparse field and one
  ``DenseFeature(name)`` per dense field;
* the inputs as a dict ``{feature name: 1-D numpy column}`` and the labels as
  a numpy array, fed to ``DataGenerator(x, y).generate_dataloader(...)``
  (a ``torch.utils.data.DataLoader`` over a per-row ``Dataset``: every row is
  built in Python and collated; ``shuffle=True``, ``num_workers=0``);
* ``MTLTrainer(model, task_types, optimizer_params={"lr", "weight_decay"})``
  and its ``train_one_epoch`` - the method its ``fit`` calls for training
  (``fit`` also scores a validation loader and saves the model each run,
  which is not training throughput).

:meth:`RecHubRun.train_prebuilt` times the same model, loss and Adam
optimizer on batches built beforehand (a dict of tensors per batch, exactly
what its loader yields), so the loader's cost can be told apart from the
model's. :meth:`RecHubRun.loader_only` times the loader alone.

Architecture mapping (hyperparameters are given in mtl_reco's config
vocabulary, so one dict drives both libraries):

==============  ====================================================
mtl_reco        Torch-RecHub 0.9.0
==============  ====================================================
shared_bottom   ``SharedBottom(features, task_types, bottom_params={"dims":
                bottom_dims}, tower_params_list=[{"dims": tower_dims}] * T)``
mmoe            ``MMOE(features, task_types, n_experts, {"dims":
                expert_dims}, [{"dims": tower_dims}] * T)``
ple             ``PLE(features, task_types, n_levels, n_specific_experts,
                n_shared_experts, {"dims": expert_dims}, towers)``
aitm            ``AITM(features, T, bottom_params={"dims": tower_dims},
                tower_params_list=[{"dims": head_dims}] * T)`` (its
                "bottoms" are our per-task towers, its "towers" our heads)
esmm            ``ESMM(user_features, item_features, cvr_params={"dims":
                cvr_dims}, ctr_params={"dims": ctr_dims})``
==============  ====================================================

Known Torch-RecHub 0.9.0 defects and how this adapter copes (only what is
needed to run; the models themselves are left as they are):

* **BatchNorm everywhere.** Its ``MLP`` puts ``BatchNorm1d`` after every
  hidden ``Linear`` - in experts, towers and the softmax gates - so a
  training batch of one row raises ``ValueError: Expected more than 1 value
  per channel when training``. ``generate_dataloader`` has no ``drop_last``,
  so when ``N % batch_size == 1`` the adapter drops the last training row
  (logged). The BatchNorm layers also cost time; that is part of what a user
  of the library pays and is not removed.
* **ESMM drops dense features** (its ``EmbeddingLayer`` is called with
  ``squeeze_dim=False`` on sparse features only) and needs the fields split
  into "user" and "item" lists: the adapter passes sparse features only,
  split as in its Ali-CCP example (item fields ``129, 205, 206, 207, 210,
  216`` when present, otherwise the last third of the fields).
* **ESMM wants three label columns** ``[cvr, ctr, ctcvr]`` and its trainer
  sums the losses of columns 1 and 2 only (``isinstance(model, ESMM)``);
  column 0 is filled with the conversion (CTCVR) label, which in a
  click -> purchase funnel equals the purchase label its example uses.
* Heads output probabilities (``sigmoid``) trained with ``BCELoss``; the
  trainer's non-ESMM objective is the mean of the task losses.
* ``train_one_epoch`` prints a loss line and draws a tqdm bar; both are
  silenced here (redirected), they do not change the timing measurably.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

ARCHITECTURES = ("shared_bottom", "mmoe", "ple", "aitm", "esmm")
#: Item-side fields of Ali-CCP in Torch-RecHub's ESMM example.
ESMM_ITEM_FIELDS = ("129", "205", "206", "207", "210", "216")


def rechub_version() -> str:
    """Installed Torch-RecHub version (raises ImportError when absent)."""
    from importlib.metadata import version

    import torch_rechub  # noqa: F401  (fail early with the import error)

    return version("torch-rechub")


@dataclass
class Arrays:
    """One encoded split as numpy arrays (what mtl_reco's encoder produces).

    Attributes:
        sparse: ``(N, F)`` integer ids, field ``j`` in ``[0, vocab_sizes[j])``.
        dense: ``(N, D)`` float32 values.
        labels: ``(N, T)`` float32 labels, in task order.
        sparse_names: Field names of ``sparse``'s columns.
        vocab_sizes: Vocabulary size (cardinality incl. id 0) per sparse field.
        dense_names: Field names of ``dense``'s columns.
    """

    sparse: np.ndarray
    dense: np.ndarray
    labels: np.ndarray
    sparse_names: Sequence[str]
    vocab_sizes: Sequence[int]
    dense_names: Sequence[str]

    def __len__(self) -> int:
        return int(self.sparse.shape[0])

    def head(self, n: int) -> Arrays:
        """The first ``n`` rows."""
        return Arrays(
            self.sparse[:n],
            self.dense[:n],
            self.labels[:n],
            self.sparse_names,
            self.vocab_sizes,
            self.dense_names,
        )


def _features(arrays: Arrays, embed_dim: int, with_dense: bool = True) -> list[Any]:
    from torch_rechub.basic.features import DenseFeature, SparseFeature

    feats: list[Any] = [
        SparseFeature(name, int(size), embed_dim=embed_dim)
        for name, size in zip(arrays.sparse_names, arrays.vocab_sizes, strict=True)
    ]
    if with_dense:
        feats += [DenseFeature(name) for name in arrays.dense_names]
    return feats


def _esmm_split(features: list[Any]) -> tuple[list[Any], list[Any]]:
    names = [f.name for f in features]
    if any(n in ESMM_ITEM_FIELDS for n in names):
        item = [f for f in features if f.name in ESMM_ITEM_FIELDS]
    else:
        item = features[len(features) - max(1, len(features) // 3) :]
    item_names = {f.name for f in item}
    return [f for f in features if f.name not in item_names], item


def build_rechub_model(
    arch: str, arrays: Arrays, embed_dim: int, params: Mapping[str, Any]
) -> tuple[torch.nn.Module, list[str]]:
    """Build Torch-RecHub's model for ``arch`` from mtl_reco-style params.

    Args:
        arch: One of :data:`ARCHITECTURES`.
        arrays: The data (feature names, vocab sizes, number of tasks).
        embed_dim: Embedding size of every sparse field.
        params: Hyperparameters in mtl_reco's vocabulary (see the module
            docstring's table), e.g. ``{"n_experts": 8, "expert_dims": [16],
            "tower_dims": [8]}``.

    Returns:
        The model and its ``task_types`` list (ESMM: three entries).
    """
    from torch_rechub.models.multi_task import AITM, ESMM, MMOE, PLE, SharedBottom

    n_tasks = int(arrays.labels.shape[1])
    types = ["classification"] * n_tasks
    if arch == "esmm":
        user, item = _esmm_split(_features(arrays, embed_dim, with_dense=False))
        model = ESMM(
            user,
            item,
            cvr_params={"dims": list(params["cvr_dims"])},
            ctr_params={"dims": list(params["ctr_dims"])},
        )
        return model, ["classification"] * 3
    feats = _features(arrays, embed_dim)
    if arch == "shared_bottom":
        towers = [{"dims": list(params["tower_dims"])} for _ in range(n_tasks)]
        model = SharedBottom(
            feats,
            types,
            bottom_params={"dims": list(params["bottom_dims"])},
            tower_params_list=towers,
        )
    elif arch == "mmoe":
        towers = [{"dims": list(params["tower_dims"])} for _ in range(n_tasks)]
        model = MMOE(
            feats,
            types,
            int(params["n_experts"]),
            expert_params={"dims": list(params["expert_dims"])},
            tower_params_list=towers,
        )
    elif arch == "ple":
        towers = [{"dims": list(params["tower_dims"])} for _ in range(n_tasks)]
        model = PLE(
            feats,
            types,
            n_level=int(params["n_levels"]),
            n_expert_specific=int(params["n_specific_experts"]),
            n_expert_shared=int(params["n_shared_experts"]),
            expert_params={"dims": list(params["expert_dims"])},
            tower_params_list=towers,
        )
    elif arch == "aitm":
        heads = [{"dims": list(params["head_dims"])} for _ in range(n_tasks)]
        model = AITM(
            feats,
            n_tasks,
            bottom_params={"dims": list(params["tower_dims"])},
            tower_params_list=heads,
        )
    else:
        raise ValueError(f"unknown architecture {arch!r}; one of {ARCHITECTURES}")
    return model, types


def _x_dict(arrays: Arrays, with_dense: bool = True) -> dict[str, np.ndarray]:
    """``{name: 1-D column}`` as a user gets from ``data[name].values``.

    Sparse ids as int64 (pandas' integer dtype), dense values as float32.
    ESMM gets sparse columns only, as in Torch-RecHub's example (it would
    ignore dense columns anyway, and its loader would still collate them).
    """
    x: dict[str, np.ndarray] = {}
    sparse = arrays.sparse.astype(np.int64, copy=False)
    for j, name in enumerate(arrays.sparse_names):
        x[name] = np.ascontiguousarray(sparse[:, j])
    if with_dense:
        for j, name in enumerate(arrays.dense_names):
            x[name] = np.ascontiguousarray(arrays.dense[:, j], dtype=np.float32)
    return x


def _y(arrays: Arrays, esmm: bool) -> np.ndarray:
    labels = np.ascontiguousarray(arrays.labels, dtype=np.float32)
    if esmm:  # [cvr, ctr, ctcvr]; cvr column = conversion label (see docstring)
        return np.ascontiguousarray(labels[:, [1, 0, 1]])
    return labels


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Torch-RecHub's prints and tqdm bars (they go to stdout/stderr)."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


@dataclass
class RecHubRun:
    """One Torch-RecHub model + MTLTrainer + DataLoader, ready to time.

    Args:
        arch: Architecture (see :data:`ARCHITECTURES`).
        arrays: Training data.
        embed_dim: Embedding size of every sparse field.
        params: Hyperparameters in mtl_reco's vocabulary.
        batch_size: Training batch size.
        lr: Adam learning rate.
        weight_decay: Adam weight decay (its examples use 1e-4).
        seed: ``torch.manual_seed`` before building (init and shuffling).
    """

    arch: str
    arrays: Arrays
    embed_dim: int
    params: Mapping[str, Any]
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 2022
    trimmed_rows: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        from torch_rechub.trainers import MTLTrainer

        torch.manual_seed(self.seed)
        self.esmm = self.arch == "esmm"
        arrays = self.arrays
        if len(arrays) % self.batch_size == 1:
            # Workaround: a 1-row last batch crashes its BatchNorm layers and
            # generate_dataloader offers no drop_last.
            arrays = arrays.head(len(arrays) - 1)
            self.trimmed_rows = 1
            logger.warning(
                "Torch-RecHub: dropped 1 training row (a last batch of one row "
                "crashes its BatchNorm layers)"
            )
        self.train_arrays = arrays
        self.model, self.task_types = build_rechub_model(
            self.arch, arrays, self.embed_dim, self.params
        )
        self._model_dir = tempfile.TemporaryDirectory(prefix="rechub_")
        self.trainer = MTLTrainer(
            self.model,
            task_types=self.task_types,
            optimizer_params={"lr": self.lr, "weight_decay": self.weight_decay},
            n_epoch=1,
            device="cpu",
            model_path=self._model_dir.name,
        )
        self.loader = self.make_loader(arrays)

    def make_loader(self, arrays: Arrays) -> Any:
        """Its training DataLoader over ``arrays`` (via its DataGenerator)."""
        from torch_rechub.utils.data import DataGenerator

        x, y = _x_dict(arrays, not self.esmm), _y(arrays, self.esmm)
        small = arrays.head(min(len(arrays), 2))
        xs, ys = _x_dict(small, not self.esmm), _y(small, self.esmm)
        with _quiet():
            train, _, _ = DataGenerator(x, y).generate_dataloader(
                x_val=xs, y_val=ys, x_test=xs, y_test=ys, batch_size=self.batch_size
            )
        return train

    @property
    def n_rows(self) -> int:
        """Training rows per epoch (after the 1-row workaround)."""
        return len(self.train_arrays)

    def n_parameters(self) -> int:
        """Trainable parameters of the model."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def train_epochs(self, epochs: int, loader: Any = None) -> float:
        """Run ``MTLTrainer.train_one_epoch`` ``epochs`` times; return seconds."""
        loader = self.loader if loader is None else loader
        with _quiet():
            start = time.perf_counter()
            for _ in range(epochs):
                self.trainer.train_one_epoch(loader)
            return time.perf_counter() - start

    def warm_up(self, n_batches: int) -> None:
        """A short epoch over the first ``n_batches`` batches (untimed)."""
        rows = min(self.n_rows, n_batches * self.batch_size)
        if rows % self.batch_size == 1:
            rows -= 1
        self.train_epochs(1, self.make_loader(self.train_arrays.head(rows)))

    def prebuilt_batches(self) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """One shuffled epoch as ready tensors, shaped like its loader's output."""
        arrays = self.train_arrays
        x = _x_dict(arrays, not self.esmm)
        y = torch.from_numpy(_y(arrays, self.esmm))
        cols = {k: torch.from_numpy(v) for k, v in x.items()}
        perm = torch.randperm(len(arrays))
        batches = []
        for start in range(0, len(arrays), self.batch_size):
            idx = perm[start : start + self.batch_size]
            batches.append(({k: v[idx] for k, v in cols.items()}, y[idx]))
        return batches

    def train_prebuilt(
        self,
        epochs: int,
        batches: list[tuple[dict[str, torch.Tensor], torch.Tensor]] | None = None,
    ) -> float:
        """Its model + loss + Adam step on pre-built batches; return seconds.

        The step is the one ``MTLTrainer.train_one_epoch`` runs for a fixed
        objective (its ``loss_fns``, its optimizer, ``model.zero_grad()``),
        without its DataLoader.
        """
        batches = self.prebuilt_batches() if batches is None else batches
        trainer, model = self.trainer, self.model
        model.train()
        n_task = len(self.task_types)
        start = time.perf_counter()
        for _ in range(epochs):
            for x, y in batches:
                preds = model(x)
                losses = [
                    trainer.loss_fns[i](preds[:, i], y[:, i].float())
                    for i in range(n_task)
                ]
                loss = sum(losses[1:]) if self.esmm else sum(losses) / n_task
                model.zero_grad()
                loss.backward()
                trainer.optimizer.step()
        return time.perf_counter() - start

    def loader_only(self, epochs: int = 1) -> float:
        """Iterate its DataLoader alone (no model); return seconds."""
        start = time.perf_counter()
        for _ in range(epochs):
            for _batch in self.loader:
                pass
        return time.perf_counter() - start

    def close(self) -> None:
        """Remove the temporary model directory."""
        self._model_dir.cleanup()
