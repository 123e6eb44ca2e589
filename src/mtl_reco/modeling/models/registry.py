"""Model registry: architecture name -> class, specs and rebuilding from a spec.

Adding an architecture is its module plus one line in :data:`MODELS` (or a
call to :func:`register_model` from outside the package); the pipelines, the
parameter validation and the test suites all read this mapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

from pydantic import Field, model_validator

from mtl_reco.modeling.config import ConfigError, ModelConfig, StrictConfig
from mtl_reco.modeling.models.aitm import AITM
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.models.esmm import ESMM
from mtl_reco.modeling.models.mmoe import MMoE
from mtl_reco.modeling.models.ple import PLE
from mtl_reco.modeling.models.shared_bottom import SharedBottom
from mtl_reco.schema import FeatureSchema, TaskSpec

__all__ = [
    "MODELS",
    "ModelSpec",
    "available_models",
    "build_model",
    "get_model_class",
    "model_from_spec",
    "register_model",
]

MODELS: dict[str, type[MultiTaskModel]] = {
    "shared_bottom": SharedBottom,
    "esmm": ESMM,
    "mmoe": MMoE,
    "ple": PLE,
    "aitm": AITM,
}
"""Every architecture by name (the class's ``name``)."""


def register_model(cls: type[MultiTaskModel]) -> type[MultiTaskModel]:
    """Add ``cls`` to :data:`MODELS` under ``cls.name`` (usable as a decorator).

    Raises:
        ValueError: ``cls.name`` is empty or already taken by another class.
    """
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if MODELS.get(cls.name, cls) is not cls:
        raise ValueError(f"model name {cls.name!r} is already registered")
    MODELS[cls.name] = cls
    return cls


def available_models() -> list[str]:
    """Names accepted by :func:`get_model_class`, sorted."""
    return sorted(MODELS)


def get_model_class(name: str) -> type[MultiTaskModel]:
    """Return the class registered as ``name``; unknown names raise ConfigError."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; choose one of {', '.join(available_models())}"
        ) from None


def build_model(
    name: str,
    schema: FeatureSchema,
    tasks: Sequence[TaskSpec | str] | None = None,
    config: ModelConfig | Mapping[str, Any] | None = None,
) -> MultiTaskModel:
    """Build the architecture ``name`` for ``schema``/``tasks``.

    ``config`` may be the typed config, a plain mapping of hyperparameters or
    ``None`` (defaults).

    Example::

        model = build_model("mmoe", schema, config={"n_experts": 4})
        outputs = model(sparse, dense)  # {"ctr": (B,), "ctcvr": (B,)}
    """
    cls = get_model_class(name)
    typed = (
        config if isinstance(config, ModelConfig) else cls.config_cls.from_dict(config)
    )
    return cls(schema, tasks, typed)


def model_from_spec(spec: Mapping[str, Any]) -> MultiTaskModel:
    """Rebuild an (untrained) model from :meth:`MultiTaskModel.spec` output."""
    schema = FeatureSchema.from_dict(spec["schema"])
    return build_model(
        str(spec["model"]), schema, list(spec["tasks"]), spec.get("config")
    )


class ModelSpec(StrictConfig):
    """Which architecture to build and its hyperparameters (an experiment's ``model``).

    ``params`` is checked against the named model's config class when the spec
    is created, so an unknown model or a misspelt hyperparameter fails before
    any training starts. ``tasks`` picks and orders the loss heads among the
    feature schema's tasks (``None``: all of them, in schema order; AITM
    orders its information transfer along this list).

    Example::

        ModelSpec(name="mmoe", params={"n_experts": 4})
    """

    name: str = "mmoe"
    params: dict[str, Any] = Field(default_factory=dict)
    tasks: list[str] | None = None

    @model_validator(mode="after")
    def _check_params(self) -> Self:
        """Resolve the model name and type-check its parameters."""
        self.build_config()
        return self

    def build_config(self) -> ModelConfig:
        """Return the model's typed config (raises ConfigError when invalid)."""
        cls = get_model_class(self.name)
        try:
            return cls.config_cls.from_dict(self.params)
        except ConfigError as exc:
            raise ConfigError(f"model {self.name!r}: {exc}") from None
