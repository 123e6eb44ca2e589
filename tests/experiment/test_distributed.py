"""Data-parallel training: two real gloo ranks (spawned processes) on the CPU.

What must hold:

* with the global batch equal to the whole split (every step sees the same
  rows whatever the shard), two ranks end with the parameters of one process
  to float rounding, for every loss weighting: DDP's gradient average and the
  per-task gradient averaging of GradNorm, MetaBalance and PCGrad are right;
* with mini-batches (each rank shuffles its own shard) the test AUC is that
  of one process within seed noise, in memory and streamed;
* validation metrics are those of the whole split, not a mean over ranks;
* a checkpoint written under DDP is resumed under DDP;
* a failing rank ends the training with one error naming the rank.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_reco.experiment.config import EvaluationConfig
from mtl_reco.experiment.distributed import DistributedTrainingError
from mtl_reco.experiment.loading import load_tensor_table
from mtl_reco.experiment.nodes import evaluate_experiment, rebuild_model, train_model
from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.evaluation import evaluate_model
from mtl_reco.modeling.models.registry import ModelSpec, available_models
from mtl_reco.modeling.weighting.registry import WeightingSpec
from mtl_reco.tables import FrameTable, ParquetTable, write_parquet

from .test_nodes import TRAINER, _frame, _schema

pytestmark = pytest.mark.slow

MODEL = ModelSpec.from_dict(
    {"name": "mmoe", "params": {"n_experts": 2, "expert_dims": [8], "tower_dims": [4]}}
)
SCHEMA = _schema().to_dict()


def _config(ranks: int, **changes) -> TrainerConfig:
    return TrainerConfig.from_dict(
        {**TRAINER.to_dict(), "distributed": {"nproc_per_node": ranks}, **changes}
    )


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.parametrize(
    "weighting", ["fixed", "uwl", "dwa", "gradnorm", "metabalance", "pcgrad"]
)
def test_two_ranks_take_the_steps_of_one_process_on_the_global_batch(weighting):
    frame = _frame(2048, 1)
    if weighting == "pcgrad":  # opposed tasks: PCGrad projects every step
        frame["ctcvr"] = 1.0 - frame["ctr"]
    train, valid = FrameTable(frame), FrameTable(_frame(1000, 2))
    spec = WeightingSpec.from_dict({"name": weighting})
    states = {}
    for ranks in (1, 2):
        cfg = _config(ranks, batch_size=2048, epochs=4)
        states[ranks], _, history = train_model(train, valid, SCHEMA, MODEL, spec, cfg)
        assert history["epochs_run"] == 4
    assert _max_diff(states[1], states[2]) < 1e-5


SMALL = {
    "shared_bottom": {"bottom_dims": [8], "tower_dims": [4]},
    "esmm": {"ctr_dims": [8], "cvr_dims": [8]},
    "ple": {"n_levels": 1, "expert_dims": [8], "tower_dims": [4]},
    "aitm": {"tower_dims": [8]},
}


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_every_architecture_trains_on_two_ranks_like_one_process(arch):
    """DDP needs every parameter to get a gradient each step (AITM's calibrator,
    ESMM's latent CVR tower, PLE's task experts)."""
    assert set(SMALL) | {"mmoe"} <= set(available_models())
    model = ModelSpec.from_dict({"name": arch, "params": SMALL[arch]})
    train, valid = FrameTable(_frame(1024, 13)), FrameTable(_frame(400, 14))
    spec = WeightingSpec.from_dict({"name": "uwl"})
    states = [
        train_model(train, valid, SCHEMA, model, spec, _config(r, batch_size=1024))[0]
        for r in (1, 2)
    ]
    assert _max_diff(*states) < 1e-5


def test_mini_batches_on_two_ranks_reach_the_quality_of_one_process(tmp_path):
    paths = {}
    for name, (n, seed) in {"train": (12000, 1), "valid": (3000, 2)}.items():
        paths[name] = tmp_path / f"{name}.parquet"
        write_parquet(_frame(n, seed), paths[name], chunk_rows=1000)
    train, valid = ParquetTable(paths["train"]), ParquetTable(paths["valid"])
    test = FrameTable(_frame(4000, 3))
    spec = WeightingSpec.from_dict({"name": "fixed"})
    evaluation = EvaluationConfig(group_column=None, batch_size=1024)
    aucs = {}
    for ranks, data in ((1, "memory"), (2, "memory"), (2, "stream")):
        cfg = _config(ranks, data=data, stream_buffer_rows=2000)
        state, model_spec, history = train_model(train, valid, SCHEMA, MODEL, spec, cfg)
        metrics, _, _ = evaluate_experiment(
            state, model_spec, valid, test, history, cfg, evaluation
        )
        aucs[ranks, data] = metrics["test"]["tasks"]["ctr"]["auc"]
    assert aucs[1, "memory"] > 0.7
    for key in ((2, "memory"), (2, "stream")):
        assert abs(aucs[key] - aucs[1, "memory"]) < 0.01, aucs


def test_validation_metrics_cover_the_whole_split():
    train, valid = FrameTable(_frame(2048, 4)), FrameTable(_frame(1001, 5))
    spec = WeightingSpec.from_dict({"name": "fixed"})
    cfg = _config(2, epochs=1)
    state, model_spec, history = train_model(train, valid, SCHEMA, MODEL, spec, cfg)
    model = rebuild_model(state, model_spec)
    whole = evaluate_model(
        model, load_tensor_table(valid, model.schema), batch_size=4096, device="cpu"
    )
    logged = history["epochs"][0]["valid"]
    assert logged["ctr.auc"] == pytest.approx(whole["tasks"]["ctr"]["auc"], abs=1e-12)
    assert logged["ctcvr.auc"] == pytest.approx(
        whole["tasks"]["ctcvr"]["auc"], abs=1e-12
    )
    # the per-rank AUCs differ from the whole split's (so the test can fail)
    halves = [
        evaluate_model(
            model, load_tensor_table(valid, model.schema, rows=rows), device="cpu"
        )["tasks"]["ctr"]["auc"]
        for rows in ((0, 501), (501, 1001))
    ]
    assert abs(np.mean(halves) - logged["ctr.auc"]) > 1e-6


def test_a_checkpoint_written_under_ddp_resumes_under_ddp(tmp_path):
    train, valid = FrameTable(_frame(2048, 6)), FrameTable(_frame(512, 7))
    spec = WeightingSpec.from_dict({"name": "uwl"})
    cfg = _config(
        2,
        epochs=2,
        checkpoint_dir=str(tmp_path / "ckpt"),
        early_stopping={"patience": 0},
    )
    first, _, history = train_model(
        train, valid, SCHEMA, MODEL, spec, cfg, experiment="mmoe"
    )
    assert history["resumed_from"] is None
    assert (tmp_path / "ckpt" / "mmoe" / "last.pt").is_file()
    again, _, resumed = train_model(
        train, valid, SCHEMA, MODEL, spec, cfg, experiment="mmoe"
    )
    assert resumed["resumed_from"] == 2 and resumed["epochs_run"] == 2
    assert resumed["epochs"] == history["epochs"]
    assert _max_diff(first, again) == 0.0


def test_a_failing_rank_ends_the_training_with_one_error_naming_it():
    frame = _frame(2048, 8)
    frame.loc[1024:, "D508"] = np.nan  # only the second rank's shard
    train, valid = FrameTable(frame), FrameTable(_frame(512, 9))
    spec = WeightingSpec.from_dict({"name": "fixed"})
    with pytest.raises(DistributedTrainingError, match=r"rank 1 .*non-finite"):
        train_model(train, valid, SCHEMA, MODEL, spec, _config(2, epochs=1))


def test_torchrun_from_the_command_line_trains_the_same_model(tmp_path):
    """The cluster path: ``torchrun`` starts the ranks on files of a data run."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    folder = tmp_path / "data" / "05_model_input"
    folder.mkdir(parents=True)
    train, valid = _frame(2048, 11), _frame(600, 12)
    write_parquet(train, folder / "encoded_train.parquet")
    write_parquet(valid, folder / "encoded_valid.parquet")
    (folder / "feature_schema.json").write_text(json.dumps(SCHEMA))
    trainer = {**_config(1, batch_size=2048, epochs=3).to_dict(), "distributed": {}}
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m",
         "mtl_reco.experiment.distributed", "--data-dir", str(tmp_path / "data"),
         "--model", json.dumps(MODEL.to_dict()), "--weighting", '{"name": "gradnorm"}',
         "--trainer", json.dumps(trainer), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(tmp_path / "out" / "model_state.pt", weights_only=True)
    history = json.loads((tmp_path / "out" / "training_history.json").read_text())
    assert history["epochs_run"] == 3
    single, _, _ = train_model(
        FrameTable(train),
        FrameTable(valid),
        SCHEMA,
        MODEL,
        WeightingSpec.from_dict({"name": "gradnorm"}),
        _config(1, batch_size=2048, epochs=3),
    )
    assert _max_diff(single, state) < 1e-5
