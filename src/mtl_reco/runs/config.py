"""The ``runs`` parameter block (no framework import)."""

from __future__ import annotations

from dataclasses import dataclass

from mtl_reco.typed_config import ConfigError, StrictConfig


@dataclass(frozen=True)
class RunsConfig(StrictConfig):
    """How much history a data folder keeps.

    Attributes:
        data_dir: The data folder (``${globals:data_dir}``; set it in
            ``globals.yml`` so the catalog follows).
        keep_versions: Newest versions kept per versioned artefact (models,
            metrics, plots, scores); older ones are deleted after every
            successful run. ``null`` keeps all.
        keep_failed: Newest failed, interrupted or killed runs kept under
            ``<data_dir>/failed_runs/``. ``null`` keeps all.
    """

    data_dir: str = "data"
    keep_versions: int | None = 10
    keep_failed: int | None = 5

    def validate(self) -> None:
        """Counts are at least 1 (or null)."""
        for name in ("keep_versions", "keep_failed"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"runs.{name} must be >= 1 or null, got {value}")
