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
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)

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
