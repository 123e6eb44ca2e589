"""ESMM (Ma et al. 2018): CTR and CVR towers, CTCVR = CTR x CVR in log space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field
from torch import nn

from mtl_reco.modeling.config import Dims, ModelConfig, NonEmptyDims
from mtl_reco.modeling.layers import FeatureEmbedding, Tower
from mtl_reco.modeling.models.base import (
    ModelContractError,
    MultiTaskModel,
    product_logit,
)
from mtl_reco.schema import FeatureSchema, TaskSpec


class ESMMConfig(ModelConfig):
    """Hyperparameters of :class:`ESMM`.

    Attributes:
        ctr_dims: Hidden widths of the CTR tower (at least one: its last
            hidden layer is the last shared layer).
        cvr_dims: Hidden widths of the CVR tower (may be empty).
        cvr_output: Name of the latent pCVR output.
    """

    ctr_dims: NonEmptyDims = Field(default_factory=lambda: [256, 128])
    cvr_dims: Dims = Field(default_factory=lambda: [256, 128])
    cvr_output: str = Field(default="cvr", min_length=1)


class ESMM(MultiTaskModel):
    """Entire Space Multi-task Model.

    Paper: X. Ma, L. Zhao, G. Huang, Z. Wang, Z. Hu, X. Zhu, K. Gai, "Entire
    Space Multi-Task Model: An Effective Approach for Estimating Post-Click
    Conversion Rate", SIGIR 2018.

    A CTR tower and a CVR tower read the same embedding + dense vector (dense
    features are used, unlike some reimplementations). pCTCVR = pCTR x pCVR
    is computed exactly in log space with
    :func:`~mtl_reco.modeling.models.base.product_logit`, so both supervised
    heads (click and conversion = CTCVR) are trained on every impression and
    pCVR stays latent.

    Args:
        schema: Feature schema with a ``funnel`` (click and conversion
            tasks); those must be exactly the model's tasks, both
            classification.
        tasks: Tasks to predict (``None``: the schema's tasks).
        config: :class:`ESMMConfig`.

    Shapes:
        ``forward(sparse (B, n_sparse) ids, dense (B, n_dense))`` returns
        logits of shape ``(B,)`` for the click task, the conversion task
        (CTCVR) and the latent ``cvr_output``.

    Parameter roles:
        * shared: the embedding and the CTR tower (the click loss and the
          CTCVR loss both flow through the CTR logit);
        * last shared layer: the CTR tower's last hidden Linear weight;
        * per task: the conversion task owns the CVR tower; the click task
          owns nothing alone (its whole tower is also on the CTCVR path).

    Example::

        from mtl_reco.modeling.models.registry import build_model
        from mtl_reco.schema import DenseFeature, FeatureSchema, Funnel, SparseFeature
        from mtl_reco.schema import TaskSpec
        user, age = SparseFeature("user", 100, 8), DenseFeature("age")
        tasks, funnel = (TaskSpec("ctr"), TaskSpec("ctcvr")), Funnel("ctr", "ctcvr")
        model = build_model("esmm", FeatureSchema((user,), (age,), tasks, funnel))
        out = model(torch.randint(0, 100, (4, 1)), torch.randn(4, 1))
        list(out)  # ['ctr', 'ctcvr', 'cvr']
        out["cvr"].shape  # (4,)
    """

    name = "esmm"
    config_cls = ESMMConfig
    config: ESMMConfig
    supports_regression = False
    requires_funnel = True

    def __init__(
        self,
        schema: FeatureSchema,
        tasks: Sequence[TaskSpec | str] | None = None,
        config: ESMMConfig | None = None,
    ) -> None:
        super().__init__(schema, tasks, config)
        funnel = self.schema.funnel
        if funnel is None:
            raise ModelContractError(
                "ESMM needs a click -> conversion funnel in the feature schema "
                "(schema.funnel, e.g. click='ctr', conversion='ctcvr'); the "
                f"tasks {list(self.task_names)} have none"
            )
        extra = sorted(set(self.task_names) - {funnel.click, funnel.conversion})
        if extra:
            raise ModelContractError(
                f"ESMM predicts exactly the funnel tasks {funnel.click!r} and "
                f"{funnel.conversion!r}; remove the other tasks {extra}"
            )
        cfg = self.config
        if cfg.cvr_output in self.task_names:
            raise ModelContractError(
                f"ESMM's latent output name {cfg.cvr_output!r} clashes with a task "
                "name; set ESMMConfig.cvr_output to another name"
            )
        self.click_task = funnel.click
        self.conversion_task = funnel.conversion
        self.embedding = FeatureEmbedding(self.schema, cfg.embedding_dim)
        in_dim = self.embedding.output_dim
        self.ctr_tower = Tower(in_dim, cfg.ctr_dims, cfg.activation, cfg.dropout)
        self.cvr_tower = Tower(in_dim, cfg.cvr_dims, cfg.activation, cfg.dropout)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The two loss heads, then the latent pCVR."""
        return (*self.task_names, self.config.cvr_output)

    @property
    def conversion_output(self) -> str:
        """The latent pCVR output (``cvr_output``)."""
        return self.config.cvr_output

    def forward(
        self, sparse: torch.Tensor, dense: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return click, conversion (CTCVR) and latent CVR logits, each ``(B,)``."""
        x = self.embedding(sparse, dense)
        ctr = self.ctr_tower(x)
        cvr = self.cvr_tower(x)
        logits = {
            self.click_task: ctr,
            self.conversion_task: product_logit(ctr, cvr),
        }
        out = {name: logits[name] for name in self.task_names}
        out[self.config.cvr_output] = cvr
        return out

    def shared_parameters(self) -> list[nn.Parameter]:
        """Embedding tables and the CTR tower."""
        return [*self.embedding.parameters(), *self.ctr_tower.parameters()]

    def last_shared_layer(self) -> nn.Parameter:
        """The CTR tower's last hidden Linear weight."""
        weight = self.ctr_tower.mlp.linears()[-1].weight
        assert isinstance(weight, nn.Parameter)
        return weight

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Conversion task: the CVR tower; click task: nothing of its own."""
        return {
            self.click_task: [],
            self.conversion_task: list(self.cvr_tower.parameters()),
        }
