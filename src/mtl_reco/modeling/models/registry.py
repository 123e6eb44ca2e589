"""Model registry: architecture name -> class, and rebuilding from a spec."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from mtl_reco.modeling.config import ConfigError, ModelConfig
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.schema import FeatureSchema, TaskSpec

# name -> "module:Class" (imported on first use)
_MODELS: dict[str, str] = {
    "shared_bottom": "mtl_reco.modeling.models.shared_bottom:SharedBottom",
    "esmm": "mtl_reco.modeling.models.esmm:ESMM",
    "mmoe": "mtl_reco.modeling.models.mmoe:MMoE",
    "ple": "mtl_reco.modeling.models.ple:PLE",
    "aitm": "mtl_reco.modeling.models.aitm:AITM",
}


def available_models() -> list[str]:
    """Names accepted by :func:`get_model_class`."""
    return sorted(_MODELS)


def get_model_class(name: str) -> type[MultiTaskModel]:
    """Return the class registered as ``name``; unknown names raise ConfigError."""
    target = _MODELS.get(name)
    if target is None:
        raise ConfigError(
            f"unknown model {name!r}; choose one of {', '.join(available_models())}"
        )
    module_name, _, attr = target.partition(":")
    cls: type[MultiTaskModel] = getattr(importlib.import_module(module_name), attr)
    return cls


def build_model(
    name: str,
    schema: FeatureSchema,
    tasks: Sequence[TaskSpec | str] | None = None,
    config: ModelConfig | Mapping[str, Any] | None = None,
) -> MultiTaskModel:
    """Build the architecture ``name`` for ``schema``/``tasks``.

    ``config`` may be the typed config, a plain mapping of hyperparameters or
    ``None`` (defaults).
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
