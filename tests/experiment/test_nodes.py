"""The experiment template's nodes on a small planted funnel (no Kedro session)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mtl_reco.experiment.config import EvaluationConfig, ExportConfig
from mtl_reco.experiment.nodes import (
    ParityError,
    evaluate_experiment,
    export_model,
    rebuild_model,
    train_model,
)
from mtl_reco.modeling.config import ConfigError, TrainerConfig
from mtl_reco.modeling.models.registry import ModelSpec
from mtl_reco.modeling.weighting.registry import WeightingSpec
from mtl_reco.schema import (
    DenseFeature,
    FeatureSchema,
    Funnel,
    SparseFeature,
    TaskSpec,
)
from mtl_reco.serving import OnnxPredictor
from mtl_reco.tables import FrameTable

CARD = 30


def _schema() -> FeatureSchema:
    return FeatureSchema(
        sparse=tuple(SparseFeature(name, CARD, 4) for name in ("101", "205", "206")),
        dense=(DenseFeature("D508"),),
        tasks=(TaskSpec("ctr"), TaskSpec("ctcvr")),
        funnel=Funnel("ctr", "ctcvr"),
        extras=("true_pctr", "true_pcvr", "true_pctcvr"),
    )


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = np.random.default_rng(99).normal(size=(3, CARD))
    ids = rng.integers(0, CARD, size=(n, 3))
    dense = rng.normal(size=n)
    click_logit = truth[0][ids[:, 0]] + truth[1][ids[:, 1]] + 0.5 * dense - 1.0
    cvr_logit = truth[2][ids[:, 2]] + 0.5 * truth[0][ids[:, 0]] - 0.5
    pctr, pcvr = 1 / (1 + np.exp(-click_logit)), 1 / (1 + np.exp(-cvr_logit))
    click = (rng.random(n) < pctr).astype(np.float32)
    buy = click * (rng.random(n) < pcvr)
    return pd.DataFrame(
        {
            "101": ids[:, 0].astype(np.int32),
            "205": ids[:, 1].astype(np.int32),
            "206": ids[:, 2].astype(np.int32),
            "D508": dense.astype(np.float32),
            "ctr": click,
            "ctcvr": buy.astype(np.float32),
            "true_pctr": pctr,
            "true_pcvr": pcvr,
            "true_pctcvr": pctr * pcvr,
        }
    )


TRAINER = TrainerConfig(
    device="cpu",
    epochs=3,
    batch_size=256,
    seed=3,
    progress=False,
    num_threads=1,
    optimizer={"lr": 0.01},
    early_stopping={"metric": "ctr.auc", "patience": 2},
)


def _train(frames, config):
    """The ESMM experiment of these tests, trained with ``config``."""
    return train_model(
        FrameTable(frames["train"]),
        FrameTable(frames["valid"]),
        _schema().to_dict(),
        ModelSpec(name="esmm", params={"ctr_dims": [16], "cvr_dims": [16]}),
        WeightingSpec(name="uwl"),
        config,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    frames = {
        name: _frame(n, seed)
        for name, n, seed in (("train", 6000, 1), ("valid", 1500, 2), ("test", 1500, 3))
    }
    ckpt = tmp_path_factory.mktemp("ckpt")
    config = TrainerConfig.from_dict({**TRAINER.to_dict(), "checkpoint_dir": str(ckpt)})
    state, spec, history = _train(frames, config)
    return frames, state, spec, history, ckpt


def test_train_returns_state_spec_history_and_keeps_its_final_checkpoint(trained):
    frames, state, spec, history, ckpt = trained
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert spec["model"] == "esmm" and spec["weighting"]["name"] == "uwl"
    assert spec["tasks"] == ["ctr", "ctcvr"]
    assert history["tasks"] == ["ctr", "ctcvr"]
    assert 1 <= len(history["epochs"]) <= 3
    assert history["best_epoch"] == spec["best_epoch"]
    assert set(history["epochs"][0]["weights"]) == {"ctr", "ctcvr"}
    # the final checkpoint stays until the whole run has succeeded (the run
    # guard deletes it then): a run failing after training resumes from it
    folder = ckpt / "esmm-uwl"  # no experiment name outside a pipeline
    assert sorted(p.name for p in folder.iterdir()) == [
        ".lock",
        "last.pt",
        "settings.json",
    ]
    config = TrainerConfig.from_dict({**TRAINER.to_dict(), "checkpoint_dir": str(ckpt)})
    again, _, rerun = _train(frames, config)
    assert rerun["resumed_from"] == history["epochs_run"]  # nothing trained again
    assert all(torch.equal(state[k], again[k]) for k in state)
    assert rerun["epochs"] == history["epochs"]
    # the spec rebuilds the same network
    model = rebuild_model(state, spec)
    assert model.output_names == ("ctr", "ctcvr", "cvr")


def test_training_is_seeded(trained):
    frames, state, *_ = trained
    state2, *_ = _train(frames, TRAINER)
    assert all(torch.equal(state[k], state2[k]) for k in state)


def test_evaluate_reports_valid_test_funnel_oracle_and_plots(trained):
    frames, state, spec, history, _ = trained
    metrics, predictions, figures = evaluate_experiment(
        state,
        spec,
        FrameTable(frames["valid"]),
        FrameTable(frames["test"]),
        history,
        TRAINER,
        EvaluationConfig(group_column="101"),
    )
    test = metrics["test"]
    assert metrics["model"] == "esmm" and metrics["weighting"] == "uwl"
    assert test["n_rows"] == 1500 and metrics["valid"]["n_rows"] == 1500
    assert test["tasks"]["ctr"]["auc"] > 0.7  # planted signal is learnt
    assert 0.5 < test["tasks"]["ctr"]["oracle_auc"] <= 1.0
    assert test["tasks"]["ctr"]["oracle_gap"] == pytest.approx(
        test["tasks"]["ctr"]["oracle_auc"] - test["tasks"]["ctr"]["auc"]
    )
    funnel = test["funnel"]
    assert funnel["cvr_score"] == "latent"  # ESMM's pCVR output is used
    assert funnel["cvr_rows"] == int(frames["test"]["ctr"].sum())
    assert "gauc" in test["tasks"]["ctr"]
    assert list(predictions.columns) == [
        "label_ctr",
        "label_ctcvr",
        "p_ctr",
        "p_ctcvr",
        "p_cvr",
    ]
    np.testing.assert_allclose(
        predictions["p_ctcvr"], predictions["p_ctr"] * predictions["p_cvr"], atol=1e-6
    )
    assert set(figures) == {"learning_curves.png", "task_weights.png", "roc_test.png"}


def test_export_matches_pytorch_and_fails_loudly_on_mismatch(trained):
    frames, state, spec, *_ = trained
    onnx_bytes, report = export_model(
        state, spec, FrameTable(frames["test"]), ExportConfig(parity_rows=500)
    )
    assert report["passed"] and report["max_abs_diff"] <= 1e-5
    assert report["rows_compared"] == 500
    assert set(report["max_abs_diff_by_batch_size"]) == {"1", "37"}
    predictor = OnnxPredictor(onnx_bytes)
    assert predictor.output_names == ["ctr", "ctcvr", "cvr"]
    assert all(name.startswith(("sparse_", "dense_")) for name in predictor.input_names)
    with pytest.raises(ParityError, match="differs from PyTorch"):
        export_model(
            state,
            spec,
            FrameTable(frames["test"]),
            ExportConfig(parity_rows=50, tolerance=1e-12),
        )


def test_misspelt_or_unknown_parameters_fail_before_training():
    with pytest.raises(ConfigError, match="did you mean 'n_experts'"):
        ModelSpec(name="mmoe", params={"n_expert": 4})
    with pytest.raises(ConfigError, match="unknown model 'mmoee'"):
        ModelSpec(name="mmoee")
    with pytest.raises(ConfigError, match="unknown loss weighting 'gradnorn'"):
        WeightingSpec(name="gradnorn")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        TrainerConfig(epoch=3)
