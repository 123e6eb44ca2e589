"""The ``runs`` parameter block (no framework import)."""

from __future__ import annotations

from pydantic import Field

from mtl_reco.typed_config import StrictConfig


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
    keep_versions: int | None = Field(default=10, ge=1)
    keep_failed: int | None = Field(default=5, ge=1)
