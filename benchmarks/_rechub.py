"""Torch-RecHub 0.9.0 (the optional ``bench`` extra) on mtl_reco's encoded arrays.

The adapter only calls Torch-RecHub, the way its examples do
(``examples/ranking/run_ali_ccp_multi_task.py``, ``run_census.py``): one
``SparseFeature(name, vocab, embed_dim)`` per sparse field and one
``DenseFeature`` per dense field; inputs as ``{name: 1-D column}`` fed to
``DataGenerator(x, y).generate_dataloader`` (a DataLoader over a per-row
Dataset, ``shuffle=True``); ``MTLTrainer`` with Adam. Hyperparameters come
in mtl_reco's vocabulary (``n_experts``, ``expert_dims``, ``tower_dims``, ...;
AITM: its "bottoms" are our towers, its "towers" our heads).

Torch-RecHub defects worked around (the models are left as they are):

* its MLP puts BatchNorm after every hidden Linear (gates included), so a
  1-row training batch crashes and its loader has no ``drop_last``: the last
  training row is dropped when ``rows % batch_size == 1``;
* its ESMM ignores dense features and needs the fields split into user and
  item lists (its Ali-CCP example's item fields, else the last third) and
  three label columns ``[cvr, ctr, ctcvr]`` (cvr = the conversion label);
* ``train_one_epoch`` prints a loss line and a tqdm bar: silenced.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

ESMM_ITEM_FIELDS = ("129", "205", "206", "207", "210", "216")


def require(alternative: str = "") -> str | None:
    """The installed version, or ``None`` after saying how to install it."""
    from importlib.metadata import version

    try:
        import torch_rechub  # noqa: F401

        return version("torch-rechub")
    except ImportError as exc:
        print(f"Torch-RecHub is not installed ({exc}); install the bench extra "
              f'(pip install -e ".[bench]"){alternative}', file=sys.stderr)  # fmt: skip
        return None


@dataclass
class Arrays:
    """One encoded split: ids ``(N, F)``, dense ``(N, D)``, labels ``(N, T)``."""

    sparse: np.ndarray
    dense: np.ndarray
    labels: np.ndarray
    sparse_names: Sequence[str]
    vocab_sizes: Sequence[int]
    dense_names: Sequence[str]

    @classmethod
    def of(cls, table: Any, schema: Any) -> Arrays:
        """The arrays of an encoded ``TensorTable`` and its feature schema."""
        vocab = [f.cardinality for f in schema.sparse]
        arrays = (t.numpy() for t in (table.sparse, table.dense, table.labels))
        return cls(*arrays, schema.sparse_names, vocab, schema.dense_names)

    def __len__(self) -> int:
        return int(self.sparse.shape[0])

    def head(self, n: int) -> Arrays:
        names = (self.sparse_names, self.vocab_sizes, self.dense_names)
        return Arrays(self.sparse[:n], self.dense[:n], self.labels[:n], *names)

    def trimmed(self, batch_size: int) -> Arrays:
        """Without the last row when it would form a 1-row batch."""
        return self.head(len(self) - 1) if len(self) % batch_size == 1 else self

    def x(self, dense: bool = True) -> dict[str, np.ndarray]:
        """``{name: column}``: ids as int64 (pandas' dtype), values as float32."""
        ids = self.sparse.astype(np.int64)
        out = {n: ids[:, j].copy() for j, n in enumerate(self.sparse_names)}
        for j, name in enumerate(self.dense_names if dense else ()):
            out[name] = np.ascontiguousarray(self.dense[:, j], dtype=np.float32)
        return out

    def y(self, esmm: bool = False) -> np.ndarray:
        labels = np.ascontiguousarray(self.labels, dtype=np.float32)
        return np.ascontiguousarray(labels[:, [1, 0, 1]]) if esmm else labels


def build_model(
    arch: str, arrays: Arrays, embed_dim: int, params: Mapping[str, Any]
) -> torch.nn.Module:
    """Torch-RecHub's model of ``arch`` for mtl_reco-style ``params``."""
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import AITM, ESMM, MMOE, PLE, SharedBottom

    sparse = [
        SparseFeature(n, int(v), embed_dim=embed_dim)
        for n, v in zip(arrays.sparse_names, arrays.vocab_sizes, strict=True)
    ]
    if arch == "esmm":
        items = {f.name for f in sparse} & set(ESMM_ITEM_FIELDS) or {
            f.name for f in sparse[len(sparse) - max(1, len(sparse) // 3) :]
        }
        user = [f for f in sparse if f.name not in items]
        item = [f for f in sparse if f.name in items]
        dims = {k: {"dims": list(params[f"{k}_dims"])} for k in ("cvr", "ctr")}
        return ESMM(user, item, dims["cvr"], dims["ctr"])
    feats = sparse + [DenseFeature(n) for n in arrays.dense_names]
    n_tasks = int(arrays.labels.shape[1])
    types = ["classification"] * n_tasks
    towers = [{"dims": list(params.get("tower_dims", []))} for _ in types]
    if arch == "shared_bottom":
        return SharedBottom(feats, types, {"dims": list(params["bottom_dims"])}, towers)
    experts = {"dims": list(params.get("expert_dims", []))}
    if arch == "mmoe":
        return MMOE(feats, types, int(params["n_experts"]), experts, towers)
    if arch == "ple":
        levels = [int(params[f"n_{k}"]) for k in ("levels", "specific_experts")]
        levels.append(int(params["n_shared_experts"]))
        return PLE(feats, types, *levels, experts, towers)
    if arch == "aitm":
        heads = [{"dims": list(params["head_dims"])} for _ in types]
        return AITM(feats, n_tasks, {"dims": list(params["tower_dims"])}, heads)
    raise ValueError(f"unknown architecture {arch!r}")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence Torch-RecHub's prints and tqdm bars."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def loaders(splits: Mapping[str, Arrays], batch_size: int, esmm: bool = False) -> Any:
    """Its (train, valid, test) DataLoaders; valid/test default to 2 train rows."""
    from torch_rechub.utils.data import DataGenerator

    small = splits["train"].head(2)
    x = {k: splits.get(k, small).x(not esmm) for k in ("train", "valid", "test")}
    y = {k: splits.get(k, small).y(esmm) for k in ("train", "valid", "test")}
    with quiet():
        return DataGenerator(x["train"], y["train"]).generate_dataloader(
            x_val=x["valid"], y_val=y["valid"], x_test=x["test"], y_test=y["test"],
            batch_size=batch_size,
        )  # fmt: skip


def trainer(model: torch.nn.Module, n_types: int, model_dir: str, **kw: Any) -> Any:
    """``MTLTrainer`` with Adam on the CPU (``kw``: its other arguments)."""
    from torch_rechub.trainers import MTLTrainer

    types = ["classification"] * n_types
    return MTLTrainer(model, types, device="cpu", model_path=model_dir, **kw)


class ThroughputRun:
    """One Torch-RecHub model, MTLTrainer and DataLoader, ready to time."""

    def __init__(
        self, arch: str, arrays: Arrays, embed_dim: int, params: Mapping[str, Any],
        batch_size: int, lr: float, weight_decay: float, seed: int,
    ) -> None:  # fmt: skip
        torch.manual_seed(seed)
        self.esmm, self.batch_size = arch == "esmm", batch_size
        self.arrays = arrays.trimmed(batch_size)
        self.model = build_model(arch, self.arrays, embed_dim, params)
        self._dir = tempfile.TemporaryDirectory(prefix="rechub_")
        opt = {"lr": lr, "weight_decay": weight_decay}
        n_types = 3 if self.esmm else int(arrays.labels.shape[1])
        self.trainer = trainer(
            self.model, n_types, self._dir.name, n_epoch=1, optimizer_params=opt
        )
        self.loader = self.make_loader(self.arrays)

    def make_loader(self, arrays: Arrays) -> Any:
        return loaders({"train": arrays}, self.batch_size, self.esmm)[0]

    def train_epochs(self, epochs: int, loader: Any = None) -> float:
        """``MTLTrainer.train_one_epoch`` ``epochs`` times; seconds."""
        with quiet():
            start = time.perf_counter()
            for _ in range(epochs):
                self.trainer.train_one_epoch(self.loader if loader is None else loader)
            return time.perf_counter() - start

    def warm_up(self, n_batches: int) -> None:
        rows = min(len(self.arrays), n_batches * self.batch_size)
        head = self.arrays.head(rows).trimmed(self.batch_size)
        self.train_epochs(1, self.make_loader(head))

    def train_prebuilt(self, epochs: int) -> float:
        """Its model, loss and Adam step (as ``train_one_epoch`` runs them) on
        one shuffled epoch of batches built beforehand; seconds."""
        cols = {k: torch.from_numpy(v) for k, v in self.arrays.x(not self.esmm).items()}
        y = torch.from_numpy(self.arrays.y(self.esmm))
        perm = torch.randperm(len(self.arrays))
        batches = [
            ({k: v[idx] for k, v in cols.items()}, y[idx])
            for idx in perm.split(self.batch_size)
        ]
        model, tr, n = self.model, self.trainer, y.shape[1]
        model.train()
        start = time.perf_counter()
        for _ in range(epochs):
            for x, yb in batches:
                preds = model(x)
                losses = [tr.loss_fns[i](preds[:, i], yb[:, i]) for i in range(n)]
                loss = sum(losses[1:]) if self.esmm else sum(losses) / n
                model.zero_grad()
                loss.backward()
                tr.optimizer.step()
        return time.perf_counter() - start

    def loader_only(self) -> float:
        """One epoch of its DataLoader alone; seconds."""
        start = time.perf_counter()
        for _ in self.loader:
            pass
        return time.perf_counter() - start

    def close(self) -> None:
        self._dir.cleanup()


def fit_and_score(
    arch: str, splits: Mapping[str, Arrays], embed_dim: int,
    params: Mapping[str, Any], tasks: Sequence[str], *, batch_size: int,
    lr: float, weight_decay: float, max_epochs: int, patience: int, seed: int,
    score: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    adaptive: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``MTLTrainer.fit`` with early stopping on task 0's validation AUC (its
    only option), then valid/test scored with ``score(labels, probs)``.

    It restores its best weights only when it stops early (``scored_epoch``);
    ``seconds_per_epoch`` times ``train_one_epoch`` alone (a wrapper that only
    reads the clock).
    """
    torch.manual_seed(seed)
    model = build_model(arch, splits["train"], embed_dim, params)
    train = splits["train"].trimmed(batch_size)
    train_dl, valid_dl, test_dl = loaders({**splits, "train": train}, batch_size)
    seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="rechub_fit_") as model_dir:
        tr = trainer(
            model, len(tasks), model_dir, optimizer_fn=torch.optim.Adam,
            optimizer_params={"lr": lr, "weight_decay": weight_decay},
            adaptive_params=None if adaptive is None else {"method": adaptive},
            n_epoch=max_epochs, earlystop_taskid=0, earlystop_patience=patience,
        )  # fmt: skip
        inner = tr.train_one_epoch

        def timed_epoch(loader: Any) -> Any:
            t0 = time.perf_counter()
            out = inner(loader)
            seconds.append(time.perf_counter() - t0)
            return out

        tr.train_one_epoch = timed_epoch
        with quiet():
            log_rows = tr.fit(train_dl, valid_dl)
        model = tr.model
    best = 1 + int(np.argmax([row[len(tasks)] for row in log_rows]))
    scored = {}
    model.eval()
    for split, loader in (("valid", valid_dl), ("test", test_dl)):
        with torch.no_grad():
            pairs = [(model(x), y) for x, y in loader]
        probs, labels = (torch.cat(t).numpy() for t in zip(*pairs, strict=True))
        scored[split] = {
            t: score(labels[:, i], probs[:, i]) for i, t in enumerate(tasks)
        }
    weights = None
    if getattr(tr, "loss_weight", None) is not None:
        raw = [float(w.item()) for w in tr.loss_weight]
        # its UWL loss 2 L exp(-clamp(w, 0)) + w: comparable weight exp(-max(w, 0))
        comparable = [math.exp(-max(w, 0.0)) for w in raw] if adaptive == "uwl" else raw
        weights = dict(zip(tasks, comparable, strict=True))
    epochs = len(log_rows)
    return {
        "status": "ok", "epochs_run": epochs,
        "scored_epoch": best if epochs < max_epochs else epochs,
        "seconds_per_epoch": float(np.median(seconds)) if seconds else None,
        "weights_final": weights, **scored,
    }  # fmt: skip
