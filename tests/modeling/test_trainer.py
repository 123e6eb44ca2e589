"""Trainer: history, determinism, resume, early stopping, guards, LR handling."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mtl_reco.modeling.config import ConfigError, TrainerConfig
from mtl_reco.modeling.data import TensorTable
from mtl_reco.modeling.evaluation import evaluate_model, predict
from mtl_reco.modeling.models.base import MultiTaskModel
from mtl_reco.modeling.trainer import (
    NonFiniteLossError,
    Trainer,
    TrainingError,
    train,
)
from mtl_reco.modeling.weighting.registry import build_strategy

from .conftest import make_small_model

TIMING = ("epoch_time_s", "samples_per_s")


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def small(planted_tables: dict[str, TensorTable]) -> dict[str, TensorTable]:
    return {
        "train": planted_tables["train"].subset(torch.arange(2000)),
        "valid": planted_tables["valid"].subset(torch.arange(1000)),
    }


def config(**overrides: Any) -> TrainerConfig:
    base: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 256,
        "eval_batch_size": 4096,
        "device": "cpu",
        "progress": False,
        "seed": 0,
    }
    base.update(overrides)
    return TrainerConfig(**base)


def model_for(
    name: str, tables: dict[str, TensorTable], **overrides: Any
) -> MultiTaskModel:
    from .conftest import build_tiny_schema

    return make_small_model(name, build_tiny_schema(), seed=0, **overrides)


def _strip(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in rec.items() if k not in TIMING} for rec in history]


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_history_content(small: dict[str, TensorTable]) -> None:
    model = model_for("shared_bottom", small)
    strategy = build_strategy("uwl", model.task_names, {"lr": 0.01})
    result = train(model, small["train"], small["valid"], strategy, config())
    assert result.epochs_run == 2 and len(result.history) == 2
    rec = result.history[-1]
    assert rec["epoch"] == 2
    assert set(rec["train_loss"]) == {"ctr", "ctcvr", "total"}
    assert rec["train_loss"]["total"] == pytest.approx(
        rec["train_loss"]["ctr"] + rec["train_loss"]["ctcvr"]
    )
    assert all(0.1 < v < 1.5 for v in rec["train_loss"].values())
    assert set(rec["weights"]) == {"ctr", "ctcvr"}
    assert all(math.isfinite(w) and w > 0 for w in rec["weights"].values())
    assert rec["weights"]["ctr"] != 1.0  # UWL weights moved
    for key in (
        "mean.auc",
        "ctr.auc",
        "ctcvr.logloss",
        "ctr.loss",
        "loss",
        "funnel.cvr_auc",
        "funnel.ctcvr_auc",
        "ctr.oracle_auc",
        "ctr.oracle_gap",
    ):
        assert math.isfinite(rec["valid"][key]), key
    assert rec["valid"]["loss"] == pytest.approx(
        rec["valid"]["ctr.loss"] + rec["valid"]["ctcvr.loss"]
    )
    assert rec["lr"] == {"model": 1e-3, "weighting.uwl": 0.01}
    assert rec["epoch_time_s"] > 0 and rec["samples_per_s"] > 0
    assert result.monitor == "mean.auc" and result.best_epoch in (1, 2)
    json.dumps(result.to_dict())


def test_same_seed_same_history(small: dict[str, TensorTable]) -> None:
    runs = []
    for _ in range(2):
        model = model_for("mmoe", small, dropout=0.2)
        strategy = build_strategy("gradnorm", model.task_names)
        result = train(model, small["train"], small["valid"], strategy, config())
        runs.append((_strip(result.history), _params(model)))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        assert torch.equal(value, runs[1][1][key]), key
    model = model_for("mmoe", small, dropout=0.2)
    other = train(
        model,
        small["train"],
        small["valid"],
        build_strategy("gradnorm", model.task_names),
        config(seed=1),
    )
    assert _strip(other.history) != runs[0][0]


@pytest.mark.parametrize("strategy_name", ["dwa", "gradnorm", "metabalance", "pcgrad"])
def test_resume_reaches_the_uninterrupted_result(
    small: dict[str, TensorTable], tmp_path: Path, strategy_name: str
) -> None:
    def run(epochs: int, folder: Path) -> tuple[Any, MultiTaskModel, Any]:
        model = model_for("mmoe", small, dropout=0.1)
        strategy = build_strategy(strategy_name, model.task_names)
        cfg = config(
            epochs=epochs,
            checkpoint_dir=str(folder),
            scheduler={"name": "step", "gamma": 0.5},
            early_stopping={"patience": 0, "restore_best": False},
        )
        return (
            train(model, small["train"], small["valid"], strategy, cfg),
            model,
            strategy,
        )

    full, full_model, full_strategy = run(3, tmp_path / "full")
    part, _, _ = run(2, tmp_path / "part")
    assert part.epochs_run == 2 and part.resumed_from is None
    resumed, model, strategy = run(3, tmp_path / "part")
    assert resumed.resumed_from == 2 and resumed.epochs_run == 3
    assert _strip(resumed.history) == _strip(full.history)
    for key, value in _params(full_model).items():
        assert torch.equal(value, model.state_dict()[key]), key
    for key, value in full_strategy.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, strategy.state_dict()[key]), key


def test_finished_checkpoint_resumes_without_training(
    small: dict[str, TensorTable], tmp_path: Path
) -> None:
    model = model_for("shared_bottom", small)
    cfg = config(checkpoint_dir=str(tmp_path))
    first = train(
        model, small["train"], None, build_strategy("fixed", model.task_names), cfg
    )
    before = _params(model)
    again = train(
        model, small["train"], None, build_strategy("fixed", model.task_names), cfg
    )
    assert again.resumed_from == 2 and len(again.history) == 2
    assert _strip(again.history) == _strip(first.history)
    for key, value in before.items():
        assert torch.equal(value, model.state_dict()[key])
    with pytest.raises(TrainingError, match="was written for"):
        train(model, small["train"], None, build_strategy("dwa", model.task_names), cfg)
    fresh = train(
        model,
        small["train"],
        None,
        build_strategy("dwa", model.task_names),
        config(checkpoint_dir=str(tmp_path), resume=False),
    )
    assert fresh.resumed_from is None and fresh.epochs_run == 2


class ScriptedTrainer(Trainer):
    """Returns scripted validation scores and snapshots the model at each one."""

    def __init__(self, *args: Any, scores: list[float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scores = list(scores)
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def validate(self, table: TensorTable) -> dict[str, float]:
        self.snapshots.append(_params(self.model))
        score = self.scores.pop(0)
        return {"mean.auc": score, "loss": -score}


def test_early_stopping_stops_and_restores_best(small: dict[str, TensorTable]) -> None:
    model = model_for("shared_bottom", small)
    trainer = ScriptedTrainer(
        model,
        build_strategy("fixed", model.task_names),
        config(epochs=6, early_stopping={"patience": 2}),
        scores=[0.6, 0.7, 0.65, 0.69, 0.9, 0.95],
    )
    result = trainer.fit(small["train"], small["valid"])
    assert result.stopped_early and result.epochs_run == 4
    assert result.best_epoch == 2 and result.best_score == 0.7
    assert [r["improved"] for r in result.history] == [True, True, False, False]
    assert result.restored_best
    for key, value in trainer.snapshots[1].items():
        assert torch.equal(model.state_dict()[key], value), key
    # the weights did change after the best epoch, so the restore mattered
    assert any(
        not torch.equal(value, trainer.snapshots[1][key])
        for key, value in trainer.snapshots[3].items()
    )


def test_early_stopping_min_mode_min_delta_and_bad_metric(
    small: dict[str, TensorTable],
) -> None:
    model = model_for("shared_bottom", small)
    trainer = ScriptedTrainer(
        model,
        build_strategy("fixed", model.task_names),
        config(
            epochs=5,
            early_stopping={
                "metric": "loss",
                "mode": "min",
                "patience": 2,
                "min_delta": 0.05,
            },
        ),
        scores=[0.60, 0.62, 0.70, 0.71, 0.72],  # loss = -score
    )
    result = trainer.fit(small["train"], small["valid"])
    # -0.62 and -0.71 improve by less than min_delta; -0.70 does
    assert [r["improved"] for r in result.history] == [True, False, True, False, False]
    assert result.best_epoch == 3 and result.stopped_early
    model = model_for("shared_bottom", small)
    cfg = config(early_stopping={"metric": "ctr.aucc"})
    with pytest.raises(
        ConfigError, match=r"'ctr.aucc' is not a validation metric.*ctr.auc"
    ):
        train(
            model,
            small["train"],
            small["valid"],
            build_strategy("fixed", model.task_names),
            cfg,
        )


def test_nan_guard_names_the_task(small: dict[str, TensorTable]) -> None:
    table = small["train"]
    labels = table.labels.clone()
    labels[:, table.task_names.index("ctcvr")] = float("nan")
    bad = TensorTable(table.sparse, table.dense, labels, table.task_names)
    model = model_for("mmoe", small)
    before = _params(model)
    with pytest.raises(
        NonFiniteLossError, match=r"task\(s\) \['ctcvr'\] at epoch 1, batch 0"
    ):
        train(model, bad, None, build_strategy("pcgrad", model.task_names), config())
    for key, value in before.items():  # stopped before the backward pass
        assert torch.equal(value, model.state_dict()[key])
    with pytest.raises(
        TrainingError, match="no training batch: the table has 100 rows"
    ):
        train(
            model,
            table.subset(torch.arange(100)),
            None,
            build_strategy("fixed", model.task_names),
            config(batch_size=128, drop_last=True),
        )
    with pytest.raises(
        TrainingError, match=r"no label column for task\(s\) \['ctcvr'\]"
    ):
        only_ctr = TensorTable(table.sparse, table.dense, table.labels[:, :1], ("ctr",))
        train(
            model, only_ctr, None, build_strategy("fixed", model.task_names), config()
        )


def test_per_task_learning_rates_and_strategy_groups(
    small: dict[str, TensorTable], caplog: pytest.LogCaptureFixture
) -> None:
    model = model_for("mmoe", small)
    strategy = build_strategy("gradnorm", model.task_names, {"lr": 0.05})
    cfg = config(
        epochs=1,
        optimizer={"name": "adamw", "weight_decay": 0.01, "task_lr": {"ctcvr": 0.02}},
    )
    trainer = Trainer(model, strategy, cfg)
    assert trainer.optimizer.defaults["fused"] is True  # fused AdamW on the CPU
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert list(groups) == ["model", "task.ctcvr", "weighting.gradnorm"]
    owned = {id(p) for p in model.task_parameters()["ctcvr"]}
    assert {id(p) for p in groups["task.ctcvr"]["params"]} == owned
    assert not owned & {id(p) for p in groups["model"]["params"]}
    n_model = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(groups["model"]["params"]) + len(owned) == n_model
    assert groups["task.ctcvr"]["lr"] == 0.02 and groups["model"]["lr"] == 1e-3
    assert groups["weighting.gradnorm"]["params"] == [strategy.weights]
    assert groups["weighting.gradnorm"]["lr"] == 0.05
    assert groups["weighting.gradnorm"]["weight_decay"] == 0.0
    assert groups["model"]["weight_decay"] == 0.01

    # the task group really trains with its own lr: Adam's first step moves
    # every coordinate by about lr
    def max_move(params: list[torch.nn.Parameter], before: list[torch.Tensor]) -> float:
        return max(
            float((p.detach() - b).abs().max())
            for p, b in zip(params, before, strict=True)
        )

    task_params = model.task_parameters()["ctcvr"]
    shared = model.shared_parameters()
    task_before = [p.detach().clone() for p in task_params]
    shared_before = [p.detach().clone() for p in shared]
    result = trainer.fit(small["train"].subset(torch.arange(256)), None)  # 1 step
    assert result.history[0]["lr"]["task.ctcvr"] == 0.02
    assert 0.015 < max_move(task_params, task_before) < 0.021
    assert 0.0005 < max_move(shared, shared_before) < 0.0011

    with pytest.raises(ConfigError, match=r"unknown task\(s\) \['cvr'\]"):
        Trainer(model, strategy, config(optimizer={"task_lr": {"cvr": 0.1}}))
    esmm = model_for("esmm", small)
    with caplog.at_level(logging.WARNING, logger="mtl_reco.modeling.trainer"):
        t = Trainer(
            esmm,
            build_strategy("fixed", esmm.task_names),
            config(optimizer={"task_lr": {"ctr": 0.1, "ctcvr": 0.01}}),
        )
    assert [g["name"] for g in t.optimizer.param_groups] == ["model", "task.ctcvr"]
    assert "task_lr['ctr'] ignored" in caplog.text


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [
        ({"name": "step", "gamma": 0.5}, [1e-3, 5e-4, 2.5e-4]),
        ({"name": "cosine"}, [1e-3, 7.5e-4, 2.5e-4]),
        ({"name": "none"}, [1e-3, 1e-3, 1e-3]),
    ],
)
def test_scheduler_steps_per_epoch(
    small: dict[str, TensorTable], scheduler: dict[str, Any], expected: list[float]
) -> None:
    model = model_for("shared_bottom", small)
    table = small["train"].subset(torch.arange(300))
    cfg = config(epochs=3, scheduler=scheduler, optimizer={"task_lr": {"ctr": 2e-3}})
    result = train(model, table, None, build_strategy("fixed", model.task_names), cfg)
    lrs = [r["lr"]["model"] for r in result.history]
    assert lrs == pytest.approx(expected)
    task = [r["lr"]["task.ctr"] for r in result.history]
    assert task == pytest.approx([2 * v for v in expected])


def test_plateau_scheduler_uses_the_monitored_metric(
    small: dict[str, TensorTable],
) -> None:
    model = model_for("shared_bottom", small)
    trainer = ScriptedTrainer(
        model,
        build_strategy("fixed", model.task_names),
        config(
            epochs=4,
            scheduler={"name": "plateau", "patience": 1, "gamma": 0.5},
            early_stopping={"patience": 0},
        ),
        scores=[0.7, 0.7, 0.7, 0.7],
    )
    result = trainer.fit(small["train"].subset(torch.arange(300)), small["valid"])
    assert [r["lr"]["model"] for r in result.history] == pytest.approx(
        [1e-3, 1e-3, 1e-3, 5e-4]
    )


def test_gradient_clipping_bounds_the_update(small: dict[str, TensorTable]) -> None:
    table = small["train"].subset(torch.arange(512))
    changes = []
    for clip in (None, 1e-4):
        model = model_for("shared_bottom", small)
        before = _params(model)
        cfg = config(
            epochs=1,
            grad_clip_norm=clip,
            optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.0},
        )
        train(model, table, None, build_strategy("fixed", model.task_names), cfg)
        delta = torch.cat(
            [(model.state_dict()[k] - v).reshape(-1) for k, v in before.items()]
        )
        changes.append(float(delta.norm()))
    assert changes[1] <= 2 * 0.1 * 1e-4 * (1 + 1e-4)  # 2 steps of norm <= lr * clip
    assert changes[0] > 100 * changes[1]


def test_predict_and_evaluate_model(small: dict[str, TensorTable]) -> None:
    model = model_for("esmm", small)
    probs = predict(model, small["valid"], batch_size=300, device="cpu")
    assert set(probs) == {"ctr", "ctcvr", "cvr"}
    for value in probs.values():
        assert value.shape == (1000,) and value.dtype == np.float32
        assert ((value >= 0) & (value <= 1)).all()
    np.testing.assert_allclose(probs["ctcvr"], probs["ctr"] * probs["cvr"], rtol=1e-4)
    assert model.training  # mode restored
    result = evaluate_model(model, small["valid"], device="cpu")
    assert result["funnel"]["cvr_score"] == "latent"
    assert math.isfinite(result["loss"])
    mmoe = model_for("mmoe", small)
    assert (
        evaluate_model(mmoe, small["valid"], device="cpu")["funnel"]["cvr_score"]
        == "ratio"
    )
    with pytest.raises(KeyError, match="group column 'user_id'"):
        evaluate_model(mmoe, small["valid"], device="cpu", group_column="user_id")
    with_groups = TensorTable(
        small["valid"].sparse,
        small["valid"].dense,
        small["valid"].labels,
        small["valid"].task_names,
        {**small["valid"].extras, "user_id": small["valid"].sparse[:, 0].numpy()},
    )
    gauc = evaluate_model(mmoe, with_groups, device="cpu", group_column="user_id")
    assert 0 < gauc["tasks"]["ctr"]["gauc_groups"] <= 60


def test_logging_no_validation_and_progress_bar(
    small: dict[str, TensorTable],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    # the bar is drawn on a terminal only: make the captured stderr look like one
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    model = model_for("aitm", small)
    with caplog.at_level(logging.INFO, logger="mtl_reco.modeling.trainer"):
        result = train(
            model,
            small["train"].subset(torch.arange(600)),
            None,
            build_strategy("dwa", model.task_names),
            config(progress=True, log_every=1, amp=True),  # amp: CUDA only
        )
    assert "epoch 1/2: train loss ctr" in caplog.text
    assert "valid" not in result.history[0]
    assert result.monitor is None and result.best_epoch is None
    assert "aux" in result.history[0]["train_loss"]  # AITM's calibrator
    out = capsys.readouterr()
    assert out.out == ""  # the progress bar writes to stderr, nothing is printed
    assert "epoch 1/2" in out.err


@pytest.mark.parametrize("strategy_name", ["fixed", "uwl"])
def test_compiled_training_matches_eager_and_exports(
    small: dict[str, TensorTable], strategy_name: str, tmp_path: Path
) -> None:
    """``compile: true`` trains the same model (within float noise) and exports."""
    from mtl_reco.modeling.export import check_parity, export_onnx

    results = {}
    for compiled in (False, True):
        model = model_for("mmoe", small)
        strategy = build_strategy(strategy_name, model.task_names)
        cfg = config(epochs=1, compile=compiled)
        results[compiled] = (model, train(model, small["train"], None, strategy, cfg))
    (eager, eager_run), (model, run) = results[False], results[True]
    for key in ("ctr", "ctcvr", "total"):
        got, want = (
            run.history[0]["train_loss"][key],
            eager_run.history[0]["train_loss"][key],
        )
        assert math.isfinite(got) and abs(got - want) < 1e-4, (key, got, want)
    for name, value in eager.state_dict().items():
        torch.testing.assert_close(
            model.state_dict()[name], value, atol=1e-4, rtol=1e-3
        )
    export_onnx(model, tmp_path / "compiled.onnx")
    assert check_parity(model, tmp_path / "compiled.onnx", small["valid"]) <= 1e-5


def test_compile_refuses_strategies_that_reuse_the_graph(
    small: dict[str, TensorTable],
) -> None:
    from mtl_reco.modeling.weighting.registry import STRATEGIES

    reusing = sorted(name for name, cls in STRATEGIES.items() if cls.reuses_graph)
    assert reusing == ["gradnorm", "metabalance", "pcgrad"]
    for name in reusing:
        model = model_for("mmoe", small)
        with pytest.raises(ConfigError, match=f"compile.*{name}"):
            Trainer(model, build_strategy(name, model.task_names), config(compile=True))
