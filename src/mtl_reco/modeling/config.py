"""Typed configuration of the modeling library.

These frozen pydantic models are what ``parameters_training.yml`` blocks turn
into (Kedro validates them from the YAML before any node runs), and what a
notebook user builds by hand. They are strict: a misspelt key, a wrong type
or a value out of range raises :class:`~mtl_reco.typed_config.ConfigError`
naming the key.

The per-experiment ``model`` and ``weighting`` blocks are
:class:`~mtl_reco.modeling.models.registry.ModelSpec` and
:class:`~mtl_reco.modeling.weighting.registry.WeightingSpec`, next to the
registries that resolve their names. Shared by every experiment::

    trainer:   {device: auto, epochs: 5, batch_size: 2048, ...}
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from mtl_reco.typed_config import ConfigError, StrictConfig

__all__ = [
    "ConfigError",
    "Dims",
    "DistributedConfig",
    "EarlyStoppingConfig",
    "ModelConfig",
    "NonEmptyDims",
    "OptimizerConfig",
    "SchedulerConfig",
    "StrictConfig",
    "TrainerConfig",
    "WeightingConfig",
]

Width = Annotated[int, Field(ge=1)]
Dims = list[Width]
"""Hidden layer widths (each >= 1); may be empty."""
NonEmptyDims = Annotated[list[Width], Field(min_length=1)]
"""Hidden layer widths (each >= 1), at least one."""


class ModelConfig(StrictConfig):
    """Hyperparameters every architecture accepts; models subclass this.

    Attributes:
        embedding_dim: Embedding size for every sparse field; ``None`` uses the
            per-field ``embedding_dim`` suggested by the feature schema.
        dropout: Dropout probability inside MLPs (0 disables).
        activation: Hidden activation of every MLP.
    """

    embedding_dim: int | None = Field(default=None, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"


class WeightingConfig(StrictConfig):
    """Base of every loss-weighting strategy's hyperparameters."""


class OptimizerConfig(StrictConfig):
    """Optimizer of the model parameters.

    Attributes:
        name: ``adam``, ``adamw`` or ``sgd``.
        lr: Base learning rate (shared parameters and tasks without ``task_lr``).
        weight_decay: L2 / decoupled weight decay.
        task_lr: Learning rate per task for the parameters that task owns
            (its tower, its experts, its gate), e.g. ``{ctcvr: 0.002}``.
        fused: Use the fused/foreach implementation when available.
    """

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = 0.0
    momentum: float = 0.9
    task_lr: dict[str, Annotated[float, Field(gt=0.0)]] = Field(default_factory=dict)
    fused: bool = True


class SchedulerConfig(StrictConfig):
    """Learning-rate schedule, stepped once per epoch.

    Attributes:
        name: ``none``, ``step`` (multiply by ``gamma`` every ``step_size``
            epochs), ``cosine`` (to ``min_lr`` over all epochs) or ``plateau``
            (multiply by ``gamma`` after ``patience`` epochs without improvement
            of the early-stopping metric).
    """

    name: Literal["none", "step", "cosine", "plateau"] = "none"
    step_size: int = 1
    gamma: float = 0.5
    min_lr: float = 0.0
    patience: int = 1


class EarlyStoppingConfig(StrictConfig):
    """Early stopping on a validation metric (never on the test split).

    Attributes:
        metric: Key of the validation metrics, ``<task>.<metric>`` (e.g.
            ``ctcvr.auc``), ``mean.auc`` (mean over tasks) or ``loss``.
        mode: ``max`` for AUC-like metrics, ``min`` for losses.
        patience: Epochs without improvement before stopping (0 disables).
        min_delta: Smallest change that counts as an improvement.
        restore_best: Reload the best epoch's weights at the end.
    """

    metric: str = "mean.auc"
    mode: Literal["max", "min"] = "max"
    patience: int = 2
    min_delta: float = 0.0
    restore_best: bool = True


class DistributedConfig(StrictConfig):
    """Data-parallel training with ``torch.distributed`` (DDP).

    With ``nproc_per_node > 1`` (or ``nnodes > 1``) the experiment's training
    runs as ``nproc_per_node * nnodes`` ranks started by PyTorch's elastic
    launcher (the engine behind ``torchrun``); the settings mirror
    ``torchrun``'s flags of the same names.

    Attributes:
        nproc_per_node: Ranks on this machine (one per GPU on CUDA).
        backend: ``auto`` (``nccl`` on CUDA, else ``gloo``), ``gloo`` or ``nccl``.
        nnodes: Machines taking part; each runs the same command.
        rdzv_endpoint: ``host:port`` of the rendezvous, reachable from every
            node (``None``: this machine, a free port; one node only).
        rdzv_id: Job id shared by the nodes of one training.
        rdzv_timeout_s: How long a node waits for the others to join.
    """

    nproc_per_node: int = Field(default=1, ge=1)
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    nnodes: int = Field(default=1, ge=1)
    rdzv_endpoint: str | None = None
    rdzv_id: str = "mtl_reco"
    rdzv_timeout_s: int = Field(default=900, ge=1)

    @property
    def enabled(self) -> bool:
        """More than one rank in all."""
        return self.nproc_per_node * self.nnodes > 1

    @model_validator(mode="after")
    def _check_nodes(self) -> Self:
        """Several nodes need a rendezvous endpoint they can all reach."""
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ConfigError(
                "trainer.distributed.rdzv_endpoint (host:port reachable from "
                f"every node) is required with nnodes={self.nnodes}"
            )
        return self


class TrainerConfig(StrictConfig):
    """Everything about how training runs (shared by all experiments).

    Attributes:
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``/``cuda:N``.
        amp: Mixed precision on CUDA (bfloat16 autocast); ignored on CPU.
        epochs: Maximum number of epochs.
        batch_size: Training batch size.
        eval_batch_size: Batch size for validation and prediction.
        drop_last: Drop a last incomplete training batch.
        seed: Seed for initialisation, shuffling and dropout.
        deterministic: Ask PyTorch for deterministic kernels.
        grad_clip_norm: Clip the global gradient norm (``None`` disables).
        num_threads: CPU threads for PyTorch (``None``: library default).
        checkpoint_dir: Folder for per-epoch checkpoints (``None`` disables).
        resume: Resume from the checkpoint in ``checkpoint_dir`` if present.
        progress: Show a progress bar per epoch (on a terminal only).
        log_every: Log running losses every N batches (0 disables).
        sparse_embedding_grad: Give the embedding tables row-sparse
            gradients and update only the rows a batch looks up ("lazy"
            Adam/AdamW/SGD, opt-in kernels of
            :mod:`mtl_reco.modeling.kernels.sparse_grad`): rows absent from
            a batch keep their value and optimizer state (no moment or weight
            decay for them). ``False``: dense gradients and the plain
            optimizer over whole tables.
        compile: Run the training forward through ``torch.compile`` (the
            model's parameters, state dict and export are unchanged; the
            first batches pay the compilation, tens of seconds on a CPU).
        data: How the encoded splits reach the model: ``memory`` (loaded
            whole into contiguous tensors), ``stream`` (read from parquet by
            row groups with a bounded shuffle buffer and a background
            prefetch) or ``auto`` (memory when the splits fit comfortably in
            the available RAM, else stream).
        stream_buffer_rows: Rows of the shuffle buffer in ``stream`` mode
            (shuffle quality against memory: about 130 bytes per row for
            the simulated data).
        prefetch_batches: Batches prepared ahead on a background thread in
            ``stream`` mode.
        distributed: Data-parallel training over several processes
            (:class:`DistributedConfig`); one process by default.
        max_batches_per_epoch: End each epoch after this many batches
            (``None``: the whole split); for smoke runs and benchmarks on
            large data.
    """

    device: str = "auto"
    amp: bool = False
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=2048, ge=1)
    eval_batch_size: int = Field(default=16384, ge=1)
    drop_last: bool = False
    seed: int = 2026
    deterministic: bool = False
    grad_clip_norm: float | None = None
    num_threads: int | None = None
    checkpoint_dir: str | None = None
    resume: bool = True
    progress: bool = True
    log_every: int = 0
    sparse_embedding_grad: bool = False
    compile: bool = False
    data: Literal["memory", "stream", "auto"] = "auto"
    stream_buffer_rows: int = Field(default=1_000_000, ge=1)
    prefetch_batches: int = Field(default=4, ge=1)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    max_batches_per_epoch: int | None = Field(default=None, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)

    @model_validator(mode="after")
    def _check_distributed(self) -> Self:
        """Settings data-parallel training cannot honour fail before the run."""
        dist = self.distributed
        self.check_ranks(dist.nproc_per_node * dist.nnodes)
        return self

    def check_ranks(self, world_size: int) -> None:
        """Raise :class:`ConfigError` for settings ``world_size`` ranks cannot honour.

        Also called by the trainer with the process group's size (a run
        started by ``torchrun`` need not say its ranks in ``distributed``).
        """
        if world_size <= 1:
            return
        if self.batch_size % world_size:
            raise ConfigError(
                f"trainer.batch_size {self.batch_size} (the global batch) must be "
                f"a multiple of the number of ranks, {world_size}"
            )
        for key in ("sparse_embedding_grad", "compile"):
            if getattr(self, key):
                raise ConfigError(
                    f"trainer.{key} is not supported with data-parallel training "
                    f"({world_size} ranks); set it to false"
                )

    @model_validator(mode="after")
    def _check_device(self) -> Self:
        """``device`` is auto, cpu, cuda or cuda:N."""
        if not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise ConfigError(
                "TrainerConfig.device must be auto, cpu, cuda or cuda:N, got "
                f"{self.device!r}"
            )
        return self
