"""RunStore: staging, promotion, failure, recovery after a kill, pruning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtl_reco.runs import RunStore, StoreError
from mtl_reco.runs.store import KILLED_MESSAGE


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def store(tmp_path):
    data = tmp_path / "data"
    write(data / "03_primary" / "train.parquet", "old train")
    write(
        data / "06_models" / "m" / "model.pt" / "2026-01-01T00.00.00.000Z" / "model.pt",
        "v1",
    )
    return RunStore(data)


def current(store: RunStore) -> dict[str, str]:
    return {
        k: v
        for k, v in tree(store.data_dir).items()
        if not k.startswith((".staging", "failed_runs")) and k != "run_history.jsonl"
    }


def stage(store: RunStore, run_id: str, rel: str, text: str) -> None:
    write(store.staged_path(run_id, store.data_dir / rel), text)


def test_promotion_moves_everything_into_place_and_records_success(store):
    store.begin("2026-02-01T00.00.00.000Z", {"pipelines": ["train_mmoe"]})
    stage(store, "2026-02-01T00.00.00.000Z", "03_primary/train.parquet", "new train")
    version = "06_models/m/model.pt/2026-02-01T00.00.00.000Z/model.pt"
    stage(store, "2026-02-01T00.00.00.000Z", version, "v2")
    moved = store.promote("2026-02-01T00.00.00.000Z")
    assert sorted(moved) == sorted(["03_primary/train.parquet", version])
    now = current(store)
    assert now["03_primary/train.parquet"] == "new train" and now[version] == "v2"
    assert not store.run_dir("2026-02-01T00.00.00.000Z").exists()
    (record,) = store.history()
    assert record["status"] == "succeeded" and record["pipelines"] == ["train_mmoe"]
    assert record["files"] == 2


def test_failure_changes_nothing_current_and_keeps_the_outputs(store):
    before = current(store)
    store.begin("r1", {})
    stage(store, "r1", "03_primary/train.parquet", "half written")
    kept = store.fail("r1", "failed", "boom: bad file")
    assert current(store) == before
    assert (
        kept / "outputs" / "03_primary" / "train.parquet"
    ).read_text() == "half written"
    run = json.loads((kept / "run.json").read_text())
    assert run["status"] == "failed" and run["error"] == "boom: bad file"
    assert store.history()[-1]["kept_in"] == str(kept)


def test_recover_rolls_a_dead_promotion_forward_and_fails_a_dead_run(store):
    # run a died half-way through promoting: one file moved, one still staged
    store.begin("a", {})
    stage(store, "a", "03_primary/train.parquet", "a train")
    stage(store, "a", "04_feature/feature_encoder.json", "a encoder")
    record = json.loads((store.run_dir("a") / "run.json").read_text())
    record["status"] = "promoting"
    (store.run_dir("a") / "run.json").write_text(json.dumps(record))
    staged = store.staged_path("a", store.data_dir / "03_primary/train.parquet")
    staged.replace(store.data_dir / "03_primary/train.parquet")
    # run b was SIGKILLed while running
    store.begin("b", {"command": "kedro run"})
    stage(store, "b", "03_primary/train.parquet", "b partial")
    done = {r["run_id"]: r["status"] for r in store.recover()}
    assert done == {"a": "succeeded", "b": "killed"}
    now = current(store)
    assert now["03_primary/train.parquet"] == "a train"
    assert now["04_feature/feature_encoder.json"] == "a encoder"
    assert not store.staging_root.exists() or not any(store.staging_root.iterdir())
    history = {r["run_id"]: r for r in store.history()}
    assert (
        history["b"]["status"] == "killed" and history["b"]["error"] == KILLED_MESSAGE
    )
    assert (
        store.failed_root / "b" / "outputs" / "03_primary" / "train.parquet"
    ).exists()


def test_prune_keeps_the_newest_versions_and_failed_runs(store):
    base = store.data_dir / "06_models" / "m" / "model.pt"
    for day in range(2, 6):
        write(base / f"2026-01-0{day}T00.00.00.000Z" / "model.pt", f"v{day}")
    for i in range(4):
        store.begin(f"2026-03-0{i + 1}T00.00.00.000Z", {})
        store.fail(f"2026-03-0{i + 1}T00.00.00.000Z", "failed", "x")
    report = store.prune(keep_versions=2, keep_failed=1)
    left = sorted(p.name for p in base.iterdir())
    assert left == ["2026-01-04T00.00.00.000Z", "2026-01-05T00.00.00.000Z"]
    assert len(report["versions_removed"]) == 3 and report["bytes_freed"] > 0
    assert sorted(p.name for p in store.failed_root.iterdir()) == [
        "2026-03-04T00.00.00.000Z"
    ]
    assert current(store)["03_primary/train.parquet"] == "old train"  # unversioned
    assert store.prune(None, None)["versions_removed"] == []
    with pytest.raises(StoreError, match="keep_versions must be >= 1"):
        store.prune(0, None)


def test_only_paths_inside_the_data_folder_are_staged(store, tmp_path):
    assert store.holds(store.data_dir / "05_model_input" / "x.parquet")
    assert not store.holds(tmp_path / "elsewhere.csv")
    assert not store.holds(store.staging_root / "r" / "x")
    with pytest.raises(StoreError, match="not inside the data folder"):
        store.staged_path("r", tmp_path / "elsewhere.csv")
