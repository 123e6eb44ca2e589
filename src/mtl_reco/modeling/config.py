"""Typed configuration of the modeling library.

These dataclasses are what ``parameters_training.yml`` blocks turn into (Kedro
instantiates them from the YAML before any node runs), and what a notebook
user builds by hand. They are strict: a misspelt key or a wrong type raises
:class:`~mtl_reco.typed_config.ConfigError` naming the key.

Per experiment::

    model:     {name: mmoe, params: {n_experts: 8, expert_dims: [256, 128]}}
    weighting: {name: uwl,  params: {}}

Shared by every experiment::

    trainer:   {device: auto, epochs: 5, batch_size: 2048, ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mtl_reco.typed_config import ConfigError, StrictConfig

__all__ = [
    "ConfigError",
    "EarlyStoppingConfig",
    "ModelConfig",
    "ModelSpec",
    "OptimizerConfig",
    "SchedulerConfig",
    "StrictConfig",
    "TrainerConfig",
    "WeightingConfig",
    "WeightingSpec",
]


@dataclass(frozen=True)
class ModelConfig(StrictConfig):
    """Hyperparameters every architecture accepts; models subclass this.

    Attributes:
        embedding_dim: Embedding size for every sparse field; ``None`` uses the
            per-field ``embedding_dim`` suggested by the feature schema.
        dropout: Dropout probability inside MLPs (0 disables).
        activation: Hidden activation of every MLP.
    """

    embedding_dim: int | None = None
    dropout: float = 0.0
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"

    def validate(self) -> None:
        """Check value ranges."""
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise ConfigError(f"embedding_dim must be >= 1, got {self.embedding_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class WeightingConfig(StrictConfig):
    """Base of every loss-weighting strategy's hyperparameters."""


@dataclass(frozen=True)
class ModelSpec(StrictConfig):
    """Which architecture to build and its hyperparameters.

    ``params`` is checked against the named model's config class when the spec
    is created, so an unknown model or a misspelt hyperparameter fails before
    any training starts. ``tasks`` picks and orders the loss heads among the
    feature schema's tasks (``None``: all of them, in schema order; AITM
    orders its information transfer along this list).
    """

    name: str = "mmoe"
    params: dict[str, Any] = field(default_factory=dict)
    tasks: list[str] | None = None

    def validate(self) -> None:
        """Resolve the model name and type-check its parameters."""
        self.build_config()

    def build_config(self) -> ModelConfig:
        """Return the model's typed config (raises ConfigError when invalid)."""
        from mtl_reco.modeling.models.registry import get_model_class

        cls = get_model_class(self.name)
        try:
            return cls.config_cls.from_dict(self.params)
        except ConfigError as exc:
            raise ConfigError(f"model {self.name!r}: {exc}") from None


@dataclass(frozen=True)
class WeightingSpec(StrictConfig):
    """Which loss-weighting strategy to use and its hyperparameters."""

    name: str = "fixed"
    params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Resolve the strategy name and type-check its parameters."""
        self.build_config()

    def build_config(self) -> WeightingConfig:
        """Return the strategy's typed config (raises ConfigError when invalid)."""
        from mtl_reco.modeling.weighting.registry import get_strategy_class

        cls = get_strategy_class(self.name)
        try:
            return cls.config_cls.from_dict(self.params)
        except ConfigError as exc:
            raise ConfigError(f"weighting {self.name!r}: {exc}") from None


@dataclass(frozen=True)
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
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    task_lr: dict[str, float] = field(default_factory=dict)
    fused: bool = True

    def validate(self) -> None:
        """Check value ranges."""
        if self.lr <= 0:
            raise ConfigError(f"optimizer.lr must be > 0, got {self.lr}")
        bad = {k: v for k, v in self.task_lr.items() if v <= 0}
        if bad:
            raise ConfigError(f"optimizer.task_lr must be > 0, got {bad}")


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
            Adam/AdamW/SGD, see :mod:`mtl_reco.modeling.sparse_grad`): rows
            absent from a batch keep their value and optimizer state (no
            moment or weight decay for them). ``False``: dense gradients and
            the plain optimizer over whole tables.
    """

    device: str = "auto"
    amp: bool = False
    epochs: int = 5
    batch_size: int = 2048
    eval_batch_size: int = 16384
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
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)

    def validate(self) -> None:
        """Check value ranges."""
        if self.epochs < 1:
            raise ConfigError(f"trainer.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("trainer.batch_size and eval_batch_size must be >= 1")
        if not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise ConfigError(
                f"trainer.device must be auto, cpu, cuda or cuda:N, got {self.device!r}"
            )
