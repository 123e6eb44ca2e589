"""Training loop for every multi-task model and loss-weighting strategy.

Use the :class:`Trainer` class or the one-call :func:`train` function::

    model = build_model("mmoe", schema)
    strategy = build_strategy("uwl", model.task_names)
    result = train(model, tables["train"], tables["valid"], strategy,
                   TrainerConfig(epochs=10, device="auto"))
    result.history[-1]["valid"]["mean.auc"]

What one epoch does:

* batches are sliced from the contiguous :class:`TensorTable` (seeded
  shuffle with a dedicated generator), losses are computed per loss head
  from its task type (``BCEWithLogits`` for classification, MSE for
  regression), the model's auxiliary loss is added unweighted, and the
  strategy turns them into gradients (``strategy.weighted_backward``);
* the optimizer (Adam/AdamW/SGD, fused when available) has one group for
  the model, one per task listed in ``optimizer.task_lr`` (the parameters
  that task owns, ``model.task_parameters()``) and the strategy's own
  groups; gradients of the model are clipped when ``grad_clip_norm`` is set;
* losses and weights are accumulated on the device and read once per epoch
  (and every ``log_every`` batches), so the loop has no per-batch host
  synchronisation on CUDA; on the CPU the non-finite guard checks every
  batch before the backward pass (on CUDA every 32 batches and at the end of
  the epoch, naming the first offending batch);
* then validation metrics (:func:`evaluate_model`), ``strategy.on_epoch_end``,
  early stopping, the LR scheduler (stepped per epoch) and a checkpoint.

Data-parallel training: when the process is one rank of an initialised
``torch.distributed`` process group, the trainer wraps the model in
``DistributedDataParallel`` and reads ``train_table`` as this rank's shard
(every rank's shard has the same number of rows, so every rank runs the same
steps); ``batch_size`` is the *global* batch, each rank computing
``batch_size / world_size`` rows of it. Strategies with one backward pass use
DDP's own gradient all-reduce; those that need per-task gradients (GradNorm,
MetaBalance, PCGrad) run in DDP's ``no_sync`` and average the per-task
gradients and loss values over the ranks before combining them
(``LossWeighting.set_reducer``), then the model's gradients are averaged in
one all-reduce: every rank takes the step of the global batch. Validation
gathers every rank's scores and labels on rank 0, which computes the metrics
over the whole split and broadcasts them (so early stopping decides the same
everywhere); only rank 0 logs and writes checkpoints.

A checkpoint (``<checkpoint_dir>/last.pt``, written atomically every epoch)
holds the model, optimizer, scheduler and strategy states, the RNG states
(global, CUDA and the shuffle generator), the history and the
early-stopping state; with ``resume`` a new run continues from it and ends
with exactly the parameters an uninterrupted run reaches.

The trainer never asks which model or strategy it runs: it only uses the
:class:`MultiTaskModel` and :class:`LossWeighting` contracts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from mtl_reco.modeling.config import ConfigError, TrainerConfig
from mtl_reco.modeling.data import BatchSource
from mtl_reco.modeling.device import resolve_device
from mtl_reco.modeling.evaluation import (
    evaluate_model,
    evaluate_outputs,
    predict_raw,
    task_loss,
)
from mtl_reco.modeling.kernels.sparse_grad import (
    LazyAdam,
    LazyAdamW,
    LazySGD,
    clip_grad_norm_,
    use_row_sparse_gradients,
)
from mtl_reco.modeling.metrics import flatten_metrics
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.weighting.base import LossWeighting

__all__ = [
    "CHECKPOINT_NAME",
    "NonFiniteLossError",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "train",
]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
_CHECKPOINT_FORMAT = 1
_CUDA_GUARD_EVERY = 32
_PROGRESS_LOG_S = 60.0


class TrainingError(RuntimeError):
    """Training cannot start or continue (bad setup or checkpoint)."""


class NonFiniteLossError(TrainingError, FloatingPointError):
    """A training loss became NaN or infinite; the message names the task."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        history: One record per epoch: ``epoch``, ``train_loss`` (mean per
            task, plus ``aux`` when the model has an auxiliary loss, and
            ``total``), ``weights`` (mean task weight over the epoch),
            ``valid`` (flat validation metrics, see
            :func:`~mtl_reco.modeling.metrics.flatten_metrics`, plus
            ``loss`` and ``<task>.loss``), ``lr`` (per optimizer group),
            ``epoch_time_s``, ``samples_per_s``, ``improved``.
        best_epoch: Epoch with the best monitored metric (``None`` without
            validation data).
        best_score: Its value.
        monitor: The monitored metric key (``None`` without validation).
        stopped_early: Early stopping ended the run.
        epochs_run: Number of completed epochs (including resumed ones).
        resumed_from: Epoch of the checkpoint the run resumed from, if any.
        restored_best: The model holds the best epoch's weights.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    monitor: str | None = None
    stopped_early: bool = False
    epochs_run: int = 0
    resumed_from: int | None = None
    restored_best: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy."""
        return asdict(self)


@dataclass
class _RunState:
    """Everything besides module/optimizer state that a checkpoint restores."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    stopped_early: bool = False


class _FiniteGuard:
    """Stops training with a clear message when a loss becomes non-finite.

    On the CPU every batch is checked before its backward pass (the check
    costs no synchronisation there). On CUDA the first offending batch and
    its non-finite entries are recorded on the device and checked every
    ``_CUDA_GUARD_EVERY`` batches and at the end of the epoch.
    """

    def __init__(self, names: list[str], device: torch.device) -> None:
        self.names = names
        self.deferred = device.type != "cpu"
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.first_batch = torch.full((), -1, dtype=torch.int64, device=self.device)
        self.first_values = torch.zeros(len(self.names), device=self.device)
        self.counter = torch.zeros((), dtype=torch.int64, device=self.device)

    def observe(self, values: torch.Tensor, epoch: int, batch: int) -> None:
        if not self.deferred:
            if not bool(torch.isfinite(values).all()):
                self._raise(values.tolist(), epoch, batch)
            return
        bad = ~torch.isfinite(values).all()
        first = bad & (self.first_batch < 0)
        self.first_batch = torch.where(first, self.counter, self.first_batch)
        self.first_values = torch.where(first, values.float(), self.first_values)
        self.counter += 1
        if (batch + 1) % _CUDA_GUARD_EVERY == 0:
            self.check(epoch)

    def check(self, epoch: int) -> None:
        if self.deferred and int(self.first_batch) >= 0:
            self._raise(self.first_values.tolist(), epoch, int(self.first_batch))

    def _raise(self, values: list[float], epoch: int, batch: int) -> None:
        bad = [
            f"{name} = {value}"
            for name, value in zip(self.names, values, strict=True)
            if not math.isfinite(value)
        ]
        tasks = [n for n in self.names if any(b.startswith(f"{n} =") for b in bad)]
        raise NonFiniteLossError(
            f"non-finite training loss for task(s) {tasks} at epoch {epoch}, "
            f"batch {batch}: {', '.join(bad)}. Lower optimizer.lr, set "
            "grad_clip_norm, or check that task's labels and the inputs "
            "(the last checkpoint, if any, holds the previous epoch)."
        )


class Trainer:
    """Trains a :class:`MultiTaskModel` with a :class:`LossWeighting` strategy.

    Args:
        model: The model (moved to the configured device).
        strategy: The loss-weighting strategy, built for ``model.task_names``
            (bound to the model here).
        config: How to train (:class:`~mtl_reco.modeling.config.TrainerConfig`).

    Raises:
        ConfigError: ``optimizer.task_lr`` names a task the model lacks, or
            ``compile`` is asked for with a strategy that reuses the graph.
        DeviceError: The requested device is not available.

    Attributes:
        device: The resolved device.
        optimizer: The optimizer; group ``name`` keys are ``model``,
            ``task.<task>`` and the strategy's (``weighting.<name>``).
    """

    def __init__(
        self,
        model: MultiTaskModel,
        strategy: LossWeighting,
        config: TrainerConfig | None = None,
    ) -> None:
        self.config = config if config is not None else TrainerConfig()
        self.device = resolve_device(self.config.device)
        self.model = model.to(self.device)
        self.strategy = strategy
        strategy.bind(self.model)
        strategy.to(self.device)
        self.task_names = list(model.task_names)
        self.task_types = model.task_types
        self._model_params = [p for p in model.parameters() if p.requires_grad]
        self.rank, self.world_size = _process_group()
        if self.config.compile and strategy.reuses_graph:
            raise ConfigError(
                f"trainer.compile cannot be combined with the loss weighting "
                f"{strategy.name!r}: it backpropagates through each batch more "
                "than once, which a torch.compile'd backward does not allow; set "
                "trainer.compile=false or use fixed, uwl or dwa"
            )
        use_row_sparse_gradients(model, self.config.sparse_embedding_grad)
        # the training forward; evaluation runs the plain module (other shapes)
        self._forward: Callable[..., dict[str, torch.Tensor]] = (
            cast(Callable[..., dict[str, torch.Tensor]], torch.compile(model))
            if self.config.compile
            else model
        )
        self._ddp: DistributedDataParallel | None = None
        if self.world_size > 1:
            self._setup_distributed()
        self.optimizer = self._build_optimizer()
        self.scheduler: Any = None
        self._plateau = False

    # -- setup ----------------------------------------------------------------------
    def _setup_distributed(self) -> None:
        self.config.check_ranks(self.world_size)
        self._ddp = DistributedDataParallel(
            self.model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
        )
        self._forward = self._ddp
        self.strategy.set_reducer(self._mean_over_ranks)
        # gradients DDP's hooks do not average: the strategy's own parameters,
        # and the model's when the strategy runs in no_sync
        synced = list(self.strategy.parameters())
        if self.strategy.reuses_graph:
            synced = [*self._model_params, *synced]
        self._synced_params = [p for p in synced if p.requires_grad]

    def _mean_over_ranks(self, tensors: Any) -> None:
        """Average tensors in place over the ranks (one all-reduce)."""
        tensors = list(tensors)
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        for t, part in zip(
            tensors, torch.split(flat, [t.numel() for t in tensors]), strict=True
        ):
            t.copy_(part.view_as(t))

    def _sync_gradients(self) -> None:
        """Average the gradients DDP's hooks did not (see the module doc)."""
        params = self._synced_params
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if params:
            self._mean_over_ranks([p.grad for p in params])

    def _param_groups(self) -> list[dict[str, Any]]:
        opt_cfg = self.config.optimizer
        unknown = sorted(set(opt_cfg.task_lr) - set(self.task_names))
        if unknown:
            raise ConfigError(
                f"optimizer.task_lr names unknown task(s) {unknown}; the model's "
                f"loss heads are {self.task_names}"
            )
        owned = self.model.task_parameters()
        assigned: set[int] = set()
        task_groups: list[dict[str, Any]] = []
        for task in self.task_names:
            if task not in opt_cfg.task_lr:
                continue
            params = []
            for p in owned.get(task, []):
                if p.requires_grad and id(p) not in assigned:
                    assigned.add(id(p))
                    params.append(p)
            if not params:
                logger.warning(
                    "optimizer.task_lr[%r] ignored: %s owns no parameter of its own",
                    task,
                    self.model.name or type(self.model).__name__,
                )
                continue
            task_groups.append(
                {"params": params, "lr": opt_cfg.task_lr[task], "name": f"task.{task}"}
            )
        base = [p for p in self._model_params if id(p) not in assigned]
        groups = [{"params": base, "name": "model"}, *task_groups]
        for i, group in enumerate(self.strategy.param_groups()):
            group = dict(group)
            group.setdefault("weight_decay", 0.0)
            group.setdefault("name", f"weighting.{self.strategy.name or i}")
            groups.append(group)
        return groups

    def _build_optimizer(self) -> torch.optim.Optimizer:
        opt_cfg = self.config.optimizer
        groups = self._param_groups()
        kwargs: dict[str, Any] = {
            "lr": opt_cfg.lr,
            "weight_decay": opt_cfg.weight_decay,
        }
        classes: dict[str, Callable[..., torch.optim.Optimizer]] = {
            "adam": torch.optim.Adam,
            "adamw": torch.optim.AdamW,
            "sgd": torch.optim.SGD,
        }
        if self.config.sparse_embedding_grad:  # row-wise update of sparse grads
            classes = {"adam": LazyAdam, "adamw": LazyAdamW, "sgd": LazySGD}
        cls = classes[opt_cfg.name]
        if opt_cfg.name == "sgd":
            kwargs["momentum"] = opt_cfg.momentum
        if opt_cfg.fused:
            try:
                return cls(groups, fused=True, **kwargs)
            except (RuntimeError, ValueError, TypeError) as exc:
                logger.debug(
                    "fused %s unavailable (%s); using foreach", opt_cfg.name, exc
                )
            return cls(groups, foreach=True, **kwargs)
        return cls(groups, **kwargs)

    def _build_scheduler(self, monitor_mode: str) -> Any:
        cfg = self.config.scheduler
        opt = self.optimizer
        if cfg.name == "step":
            return torch.optim.lr_scheduler.StepLR(
                opt, step_size=cfg.step_size, gamma=cfg.gamma
            )
        if cfg.name == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, T_max=self.config.epochs, eta_min=cfg.min_lr
            )
        if cfg.name == "plateau":
            self._plateau = True
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt,
                mode="max" if monitor_mode == "max" else "min",
                factor=cfg.gamma,
                patience=cfg.patience,
                min_lr=cfg.min_lr,
            )
        return None

    # -- training -------------------------------------------------------------------
    def fit(
        self, train_table: BatchSource, valid_table: BatchSource | None = None
    ) -> TrainResult:
        """Train for ``config.epochs`` epochs (or until early stopping).

        Args:
            train_table: Training split (labels for every loss head); under
                ``torch.distributed``, this rank's shard.
            valid_table: Validation split for metrics, early stopping and the
                plateau scheduler (``None``: no validation, no early stopping);
                under ``torch.distributed``, this rank's part of it.

        Returns:
            The :class:`TrainResult`; the model holds the best epoch's weights
            when early stopping's ``restore_best`` is on and validation ran.

        Raises:
            NonFiniteLossError: A loss became NaN/inf (names the task).
            TrainingError: A checkpoint does not match this run.
        """
        cfg = self.config
        label_index = self._label_index(train_table)
        batch_size = self._local_batch_size
        if train_table.num_batches(batch_size, cfg.drop_last) == 0:
            raise TrainingError(
                f"no training batch: the table has {len(train_table)} rows, "
                f"batch_size is {batch_size} and drop_last is {cfg.drop_last}"
            )
        if self.world_size > 1:
            self._check_equal_shards(len(train_table))
        es = cfg.early_stopping
        monitor = es.metric if valid_table is not None else None
        if valid_table is None and es.patience > 0:
            logger.info("no validation table: early stopping is off")
        self.scheduler = self._build_scheduler(es.mode if monitor else "min")
        with _torch_settings(cfg.num_threads, cfg.deterministic):
            torch.manual_seed(cfg.seed)
            shuffle = torch.Generator().manual_seed(cfg.seed)
            state = _RunState()
            resumed_from = None
            path = self._checkpoint_path()
            if path is not None and cfg.resume and path.is_file():
                state = self._load_checkpoint(path, shuffle)
                resumed_from = state.epoch
                logger.info("resumed from %s (epoch %d)", path, state.epoch)
            guard = _FiniteGuard([*self.task_names, "auxiliary loss"], self.device)
            for epoch in range(state.epoch + 1, cfg.epochs + 1):
                if state.stopped_early:
                    break
                record = self._train_epoch(
                    epoch, train_table, label_index, shuffle, guard
                )
                valid: dict[str, float] = {}
                if valid_table is not None:
                    valid = self.validate(valid_table)
                    record["valid"] = valid
                self.strategy.on_epoch_end(
                    {t: record["train_loss"][t] for t in self.task_names}
                )
                record["improved"] = False
                if monitor is not None:
                    record["improved"] = self._early_stopping(
                        state, epoch, valid, monitor
                    )
                self._step_scheduler(monitor, valid, record)
                state.epoch = epoch
                state.history.append(record)
                self._log_epoch(record, monitor)
                if path is not None:
                    self._save_checkpoint(path, state, shuffle)
            restored = False
            if monitor is not None and es.restore_best and state.best_state is not None:
                self.model.load_state_dict(state.best_state)
                restored = True
        return TrainResult(
            history=state.history,
            best_epoch=state.best_epoch,
            best_score=state.best_score,
            monitor=monitor,
            stopped_early=state.stopped_early,
            epochs_run=state.epoch,
            resumed_from=resumed_from,
            restored_best=restored,
        )

    @property
    def _local_batch_size(self) -> int:
        return self.config.batch_size // self.world_size

    def _check_equal_shards(self, rows: int) -> None:
        sizes = torch.tensor([rows, -rows], dtype=torch.int64)
        dist.all_reduce(sizes, op=dist.ReduceOp.MAX)
        if int(sizes[0]) != -int(sizes[1]):
            raise TrainingError(
                f"rank {self.rank} has {rows} training rows, another rank "
                f"between {-int(sizes[1])} and {int(sizes[0])}: every rank's "
                "shard must have the same rows (the same number of steps)"
            )

    def _label_index(self, table: BatchSource) -> list[int]:
        missing = [t for t in self.task_names if t not in table.task_names]
        if missing:
            raise TrainingError(
                f"the table has no label column for task(s) {missing}; its tasks "
                f"are {list(table.task_names)}"
            )
        return [table.task_names.index(t) for t in self.task_names]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _losses(
        self,
        outputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        index: list[int],
    ) -> dict[str, torch.Tensor]:
        return {
            name: task_loss(outputs[name], labels[:, col], self.task_types[name])
            for name, col in zip(self.task_names, index, strict=True)
        }

    def _train_epoch(
        self,
        epoch: int,
        table: BatchSource,
        label_index: list[int],
        shuffle: torch.Generator,
        guard: _FiniteGuard,
    ) -> dict[str, Any]:
        cfg = self.config
        model, strategy, opt = self.model, self.strategy, self.optimizer
        n_tasks = len(self.task_names)
        dev = self.device
        loss_sum = torch.zeros(n_tasks + 1, dtype=torch.float64, device=dev)
        weight_sum = torch.zeros(n_tasks, dtype=torch.float64, device=dev)
        no_aux = torch.zeros(1, device=dev)
        has_aux = False
        n_rows = 0
        batch_size = self._local_batch_size
        n_batches = table.num_batches(batch_size, cfg.drop_last)
        if cfg.max_batches_per_epoch is not None:
            n_batches = min(n_batches, cfg.max_batches_per_epoch)
        lrs = {
            g.get("name", str(i)): float(g["lr"])
            for i, g in enumerate(opt.param_groups)
        }
        guard.reset()
        model.train()
        start = time.perf_counter()
        with tqdm(
            total=n_batches,
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="batch",
            # None: shown on a terminal only (no bar garbage in cron logs)
            disable=None if cfg.progress and self.rank == 0 else True,
            leave=False,
        ) as bar:
            # no bar (a log file, cron): a progress line every minute instead
            log_progress = cfg.progress and bool(bar.disable) and self.rank == 0
            last_log = start
            batches = table.batches(
                batch_size,
                shuffle=True,
                generator=shuffle,
                drop_last=cfg.drop_last,
                device=dev,
            )
            for b, batch in enumerate(batches):
                if b == n_batches:  # max_batches_per_epoch: stop the reader too
                    close = getattr(batches, "close", None)
                    if close is not None:
                        close()
                    break
                with self._step_sync():
                    with self._autocast():
                        outputs = self._forward(batch.sparse, batch.dense)
                        losses = self._losses(outputs, batch.labels, label_index)
                        aux = model.auxiliary_loss(outputs)
                    values = torch.cat(
                        [
                            torch.stack(list(losses.values())).detach(),
                            no_aux if aux is None else aux.detach().float().reshape(1),
                        ]
                    )
                    has_aux = has_aux or aux is not None
                    guard.observe(values, epoch, b)
                    opt.zero_grad(set_to_none=True)
                    weights = strategy.weighted_backward(losses, aux)
                if self._ddp is not None:
                    self._sync_gradients()
                if cfg.grad_clip_norm is not None:
                    self._clip_gradients(cfg.grad_clip_norm)
                opt.step()
                strategy.after_step()
                rows = int(batch.labels.shape[0])
                loss_sum.add_(values, alpha=rows)
                weight_sum.add_(weights)
                n_rows += rows
                bar.update(1)
                if log_progress and time.perf_counter() - last_log >= _PROGRESS_LOG_S:
                    last_log = time.perf_counter()
                    self._log_progress(
                        epoch, b + 1, n_batches, n_rows, last_log - start
                    )
                if cfg.log_every and (b + 1) % cfg.log_every == 0:
                    running = (loss_sum[:n_tasks] / n_rows).tolist()
                    shown = {
                        t: f"{v:.4f}"
                        for t, v in zip(self.task_names, running, strict=True)
                    }
                    bar.set_postfix(shown)
                    logger.debug(
                        "epoch %d batch %d: running loss %s", epoch, b + 1, shown
                    )
        guard.check(epoch)
        if self.world_size > 1:  # the epoch's means over the global batch
            totals = torch.cat(
                [
                    loss_sum,
                    weight_sum,
                    torch.tensor([float(n_rows)], device=dev, dtype=torch.float64),
                ]
            )
            dist.all_reduce(totals)
            loss_sum = totals[: n_tasks + 1]
            weight_sum = totals[n_tasks + 1 : 2 * n_tasks + 1] / self.world_size
            n_rows = int(totals[-1])
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elapsed = time.perf_counter() - start
        means = (loss_sum / max(n_rows, 1)).tolist()
        train_loss = dict(zip(self.task_names, means[:n_tasks], strict=True))
        if has_aux:
            train_loss["aux"] = means[n_tasks]
        train_loss["total"] = float(
            sum(means[:n_tasks]) + (means[n_tasks] if has_aux else 0.0)
        )
        weights_mean = (weight_sum / max(n_batches, 1)).tolist()
        return {
            "epoch": epoch,
            "train_loss": train_loss,
            "weights": dict(zip(self.task_names, weights_mean, strict=True)),
            "lr": lrs,
            "epoch_time_s": elapsed,
            "samples_per_s": n_rows / elapsed if elapsed > 0 else float("nan"),
        }

    def _log_progress(
        self, epoch: int, done: int, total: int, rows: int, elapsed: float
    ) -> None:
        rate = rows * self.world_size / elapsed
        left = elapsed * (total - done) / max(done, 1)
        logger.info(
            "epoch %d/%d: batch %d/%d (%.0f %%), %.0f samples/s, about %.0f min left",
            epoch,
            self.config.epochs,
            done,
            total,
            100.0 * done / max(total, 1),
            rate,
            left / 60.0,
        )

    def _clip_gradients(self, max_norm: float) -> None:
        if self.config.sparse_embedding_grad:
            clip_grad_norm_(self._model_params, max_norm)
        else:
            nn.utils.clip_grad_norm_(self._model_params, max_norm, foreach=True)

    def _step_sync(self) -> contextlib.AbstractContextManager[Any]:
        """DDP's ``no_sync`` for strategies that average gradients themselves."""
        if self._ddp is not None and self.strategy.reuses_graph:
            return self._ddp.no_sync()
        return contextlib.nullcontext()

    def validate(self, table: BatchSource) -> dict[str, float]:
        """Flat validation metrics of the current model (plus ``loss``).

        Under ``torch.distributed`` ``table`` is this rank's part of the
        split: the metrics are computed over every rank's rows together.
        """
        if self.world_size == 1:
            result = evaluate_model(
                self.model,
                table,
                batch_size=self.config.eval_batch_size,
                device=self.device,
            )
            return flatten_metrics(result)
        raw = predict_raw(self.model, table, self.config.eval_batch_size, self.device)
        part = (
            {k: v.numpy() for k, v in raw.items()},
            table.labels_dict(),
            dict(table.extras),
        )
        parts: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(part, parts, dst=0)
        shared: list[Any] = [None]
        if parts is not None:
            outputs, labels, extras = (
                {k: np.concatenate([p[i][k] for p in parts]) for k in parts[0][i]}
                for i in range(3)
            )
            result = evaluate_outputs(
                self.model,
                {k: torch.from_numpy(v) for k, v in outputs.items()},
                labels,
                extras,
            )
            shared[0] = flatten_metrics(result)
        dist.broadcast_object_list(shared, src=0)
        return cast(dict[str, float], shared[0])

    def _early_stopping(
        self, state: _RunState, epoch: int, valid: Mapping[str, float], monitor: str
    ) -> bool:
        es = self.config.early_stopping
        if monitor not in valid:
            raise ConfigError(
                f"early_stopping.metric {monitor!r} is not a validation metric; "
                f"available: {sorted(valid)}"
            )
        score = valid[monitor]
        if math.isnan(score):
            logger.warning(
                "epoch %d: %s is NaN (no improvement counted)", epoch, monitor
            )
            improved = False
        elif state.best_score is None:
            improved = True
        elif es.mode == "max":
            improved = score > state.best_score + es.min_delta
        else:
            improved = score < state.best_score - es.min_delta
        if improved:
            state.best_score = float(score)
            state.best_epoch = epoch
            state.bad_epochs = 0
            state.best_state = {
                k: v.detach().to("cpu", copy=True)
                for k, v in self.model.state_dict().items()
            }
        else:
            state.bad_epochs += 1
            if es.patience > 0 and state.bad_epochs >= es.patience:
                state.stopped_early = True
                logger.info(
                    "early stopping at epoch %d: %s did not improve for %d epoch(s); "
                    "best %.6g at epoch %s",
                    epoch,
                    monitor,
                    state.bad_epochs,
                    state.best_score if state.best_score is not None else float("nan"),
                    state.best_epoch,
                )
        return improved

    def _step_scheduler(
        self, monitor: str | None, valid: Mapping[str, float], record: Mapping[str, Any]
    ) -> None:
        if self.scheduler is None:
            return
        if self._plateau:
            value = (
                valid[monitor] if monitor is not None else record["train_loss"]["total"]
            )
            self.scheduler.step(value)
        else:
            self.scheduler.step()

    def _log_epoch(self, record: Mapping[str, Any], monitor: str | None) -> None:
        if self.rank != 0:
            return
        losses = ", ".join(f"{k} {v:.4f}" for k, v in record["train_loss"].items())
        weights = ", ".join(f"{k} {v:.3f}" for k, v in record["weights"].items())
        msg = (
            f"epoch {record['epoch']}/{self.config.epochs}: train loss {losses}; "
            f"weights {weights}; {record['samples_per_s']:.0f} samples/s"
        )
        if monitor is not None:
            msg += f"; valid {monitor} {record['valid'][monitor]:.5f}"
        logger.info(msg)

    # -- checkpoints ----------------------------------------------------------------
    def _checkpoint_path(self) -> Path | None:
        if self.config.checkpoint_dir is None:
            return None
        return Path(self.config.checkpoint_dir) / CHECKPOINT_NAME

    def _meta(self) -> dict[str, Any]:
        return {
            "model": self.model.name or type(self.model).__name__,
            "tasks": list(self.task_names),
            "strategy": self.strategy.name or type(self.strategy).__name__,
        }

    def _save_checkpoint(
        self, path: Path, state: _RunState, shuffle: torch.Generator
    ) -> None:
        if self.rank != 0:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": _CHECKPOINT_FORMAT,
            "meta": self._meta(),
            "epoch": state.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None
            if self.scheduler is None
            else self.scheduler.state_dict(),
            "strategy": self.strategy.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all()
                if torch.cuda.is_available()
                else [],
                "shuffle": shuffle.get_state(),
            },
            "history": state.history,
            "best_epoch": state.best_epoch,
            "best_score": state.best_score,
            "best_state": state.best_state,
            "bad_epochs": state.bad_epochs,
            "stopped_early": state.stopped_early,
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    def _load_checkpoint(self, path: Path, shuffle: torch.Generator) -> _RunState:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != _CHECKPOINT_FORMAT:
            raise TrainingError(f"{path}: unsupported checkpoint format")
        if payload["meta"] != self._meta():
            raise TrainingError(
                f"checkpoint {path} was written for {payload['meta']}, this run is "
                f"{self._meta()}; use another checkpoint_dir or resume=false"
            )
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler is not None and payload["scheduler"] is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.strategy.load_state_dict(payload["strategy"])
        rng = payload["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        shuffle.set_state(rng["shuffle"])
        return _RunState(
            epoch=int(payload["epoch"]),
            history=list(payload["history"]),
            best_epoch=payload["best_epoch"],
            best_score=payload["best_score"],
            best_state=payload["best_state"],
            bad_epochs=int(payload["bad_epochs"]),
            stopped_early=bool(payload["stopped_early"]),
        )


def _process_group() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def _torch_settings(num_threads: int | None, deterministic: bool) -> Iterator[None]:
    """Apply thread count / deterministic kernels for the run, then restore."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.set_num_threads(old_threads)
        if deterministic:
            torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def train(
    model: MultiTaskModel,
    train_table: BatchSource,
    valid_table: BatchSource | None,
    strategy: LossWeighting,
    config: TrainerConfig | None = None,
) -> TrainResult:
    """Train ``model`` with ``strategy``: ``Trainer(...).fit(train, valid)``."""
    return Trainer(model, strategy, config).fit(train_table, valid_table)
