"""Training past memory: streaming input against memory, one against two DDP
ranks, and the whole ``train_mmoe`` run at Ali-CCP-train scale.

**Training part.** The train split of ``--base-rows`` simulated impressions
is encoded once with the pipeline's library functions (``_simulated.py``)
and written again and again, in row groups of 500,000 rows as the pipeline
writes them, until the training file of each size has 80 % of its rows
(the split's share; by default 1 M, 10 M and 40 M rows, 40 M being the
Ali-CCP train file's scale). For every size, data mode (``memory``,
``stream``) and rank count (1, 2), a child process runs the training node
(``train_model``, as ``kedro run`` does) on the default MMoE experiment of
``conf/base`` for ``--batches`` global batches of 2048 rows
(``trainer.max_batches_per_epoch``) and reports samples/s (the epoch's rows
over its seconds, the first buffer fill included) and peak RSS: that of the
process, plus each rank's own under DDP (the ranks are its children), read
from Linux's ``VmHWM`` (``ru_maxrss`` of a child started from a large
process reports the parent's size). The
largest size memory mode can train here is extrapolated from a straight
line through its peak RSS over the sizes, up to 90 % of the machine's memory.

**Pipeline part** (``--pipeline-rows``, 0 to skip): the exact command
``kedro run --pipelines=train_mmoe --params
"sources.simulated.n_rows=N,trainer.data=stream,trainer.epochs=1"`` in a
temporary copy of the project, data half included: exit status, wall time,
peak RSS of the kedro process (its ``VmHWM``, polled), seconds per node (from the
log), training samples/s and test AUCs (from the run's artefacts).

    python benchmarks/scale.py                       # ~1 h on 2 cores (40 M pipeline)
    python benchmarks/scale.py --pipeline-rows 0     # training part only (~15 min)
    python benchmarks/scale.py --quick               # CI smoke

Writes ``results/scale.json`` (``--quick``: ``scale_quick.json``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from harness import Table, option

NAME = "scale"
TRAIN_SHARE = 0.8
GROUP_ROWS = 500_000


@dataclass
class Options(harness.Config):
    sizes: tuple[int, ...] = option(
        (1_000_000, 10_000_000, 40_000_000),
        "total rows per size",
        quick=(20_000, 60_000),
    )
    base_rows: int = option(1_000_000, "simulated rows encoded once", quick=20_000)
    batches: int = option(300, "global batches of 2048 per measurement", quick=5)
    ranks: tuple[int, ...] = option((1, 2), "rank counts to compare")
    modes: tuple[str, ...] = option(("memory", "stream"), "trainer.data values")
    pipeline_rows: int = option(
        40_000_000, "rows of the kedro run (0: skip)", quick=20_000
    )
    workdir: str | None = option(None, "where the files go (default: temporary)")


# -- training part ----------------------------------------------------------------
def _write_sizes(root: Path, opts: Options) -> dict[int, Path]:
    """The encoded schema, a validation file and one training file per size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import _simulated

    data = _simulated.prepare(opts.base_rows, 2024, splits=("train", "valid"))
    (root / "feature_schema.json").write_text(json.dumps(data.schema.to_dict()))

    def arrow(split: str, rows: int | None = None) -> pa.Table:
        table = data.tables[split]
        schema = data.schema
        columns: dict[str, Any] = {}
        for j, name in enumerate(schema.sparse_names):
            columns[name] = table.sparse[:rows, j].numpy()
        for j, name in enumerate(schema.dense_names):
            columns[name] = table.dense[:rows, j].numpy()
        for j, name in enumerate(table.task_names):
            columns[name] = table.labels[:rows, j].numpy()
        return pa.table(columns)

    pq.write_table(arrow("valid", 50_000), root / "valid.parquet")
    base = arrow("train")
    files = {}
    for size in opts.sizes:
        path = root / f"train_{size}.parquet"
        want = int(size * TRAIN_SHARE)
        with pq.ParquetWriter(path, base.schema, compression="zstd") as writer:
            written = 0
            while written < want:
                part = base.slice(0, min(base.num_rows, want - written))
                writer.write_table(part, row_group_size=GROUP_ROWS)
                written += part.num_rows
        files[size] = path
        harness.say(f"wrote {path.name}: {want:,} training rows")
    return files


def _train_child(spec_path: str) -> None:
    """One measurement (child process): the training node, a JSON line out."""
    import _simulated
    from mtl_reco.experiment.distributed import peak_rss_mb
    from mtl_reco.experiment.nodes import train_model
    from mtl_reco.modeling.models.registry import ModelSpec
    from mtl_reco.modeling.weighting.registry import WeightingSpec
    from mtl_reco.tables import ParquetTable

    spec = json.loads(Path(spec_path).read_text())
    params = _simulated.project_parameters()
    trainer = _simulated.trainer_config(
        params,
        epochs=1,
        data=spec["mode"],
        max_batches_per_epoch=spec["batches"],
        early_stopping={"patience": 0},
        distributed={"nproc_per_node": spec["ranks"]},
    )
    root = Path(spec["root"])
    schema = json.loads((root / "feature_schema.json").read_text())
    start = time.perf_counter()
    _, _, history = train_model(
        ParquetTable(spec["train"]),
        ParquetTable(root / "valid.parquet"),
        schema,
        ModelSpec.from_dict(params["mmoe"]["model"]),
        WeightingSpec.from_dict(params["mmoe"]["weighting"]),
        trainer,
        experiment="mmoe",
    )
    epoch = history["epochs"][0]
    ranks = (history.get("distributed") or {}).get("peak_rss_mb_per_local_rank", [])
    out = {
        "samples_per_s": epoch["samples_per_s"],
        "epoch_s": epoch["epoch_time_s"],
        "node_s": time.perf_counter() - start,
        "process_peak_rss_mb": peak_rss_mb(),
        "rank_peak_rss_mb": ranks,
    }
    print("RESULT " + json.dumps(out), flush=True)


def _measure(
    root: Path, train: Path, size: int, mode: str, ranks: int, batches: int
) -> dict[str, Any]:
    spec = {
        "root": str(root),
        "train": str(train),
        "mode": mode,
        "ranks": ranks,
        "batches": batches,
    }
    path = root / "spec.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run(
        [sys.executable, __file__, "_train", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {
            "size": size,
            "mode": mode,
            "ranks": ranks,
            "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:],
        }
    got = json.loads(lines[-1].removeprefix("RESULT "))
    total = got["process_peak_rss_mb"] + sum(got["rank_peak_rss_mb"])
    return {
        "size": size,
        "train_rows": int(size * TRAIN_SHARE),
        "mode": mode,
        "ranks": ranks,
        **got,
        "total_peak_rss_mb": round(total, 1),
    }


def _memory_limit(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Straight line through memory mode's peak RSS (1 rank) over training rows."""
    import numpy as np

    points = [
        (r["train_rows"], r["total_peak_rss_mb"])
        for r in rows
        if r["mode"] == "memory" and r["ranks"] == 1 and "error" not in r
    ]
    if len(points) < 2:
        return None
    x, y = np.array(points, dtype=float).T
    slope, intercept = np.polyfit(x, y, 1)
    if slope <= 0:  # sizes too small to see the data in the RSS
        return None
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    rows = (0.9 * total_mb - intercept) / slope
    return {
        "bytes_per_row": round(slope * 2**20, 1),
        "intercept_mb": round(intercept),
        "machine_memory_mb": round(total_mb),
        "largest_train_rows": int(rows),
        "largest_total_rows": int(rows / TRAIN_SHARE),
    }


# -- pipeline part ----------------------------------------------------------------
def _copy_project(target: Path) -> Path:
    root = harness.PROJECT_ROOT
    for name in ("conf", "pyproject.toml", ".telemetry"):
        src = root / name
        if src.is_dir():
            shutil.copytree(src, target / name, ignore=shutil.ignore_patterns("local"))
        elif src.exists():
            shutil.copy2(src, target / name)
    (target / "conf" / "local").mkdir(exist_ok=True)
    (target / "src").mkdir(exist_ok=True)  # the installed package runs
    for layer in sorted(p for p in (root / "data").iterdir() if p.is_dir()):
        (target / "data" / layer.name).mkdir(parents=True, exist_ok=True)
    return target


def _node_seconds(log: str) -> dict[str, int]:
    """Seconds per node from Kedro's ``Running node`` / ``Completed node`` lines.

    The sequential runner runs one node at a time, so a ``Completed node:
    <namespace>.<name>`` line closes the last ``Running node: <name>`` line.
    """
    started: int | None = None
    out: dict[str, int] = {}
    for line in log.splitlines():
        match = re.match(
            r"(\d\d):(\d\d):(\d\d)\s.*(Running|Completed) node: ([\w.]+)", line
        )
        if not match:
            continue
        h, m, sec, what, node = match.groups()
        t = int(h) * 3600 + int(m) * 60 + int(sec)
        if what == "Running":
            started = t
        elif started is not None:
            out[node] = (t - started) % 86400
            started = None
    return out


def _latest(folder: Path) -> Path | None:
    """The newest version of a versioned artefact (or the file itself)."""
    if folder.is_file():
        return folder
    versions = sorted(folder.glob("*/" + folder.name)) if folder.is_dir() else []
    return versions[-1] if versions else None


def _pipeline(root: Path, rows: int) -> dict[str, Any]:
    project = _copy_project(root / "project")
    params = f"sources.simulated.n_rows={rows},trainer.data=stream,trainer.epochs=1"
    command = ["kedro", "run", "--pipelines=train_mmoe", "--params", params]
    kedro = str(Path(sys.executable).with_name("kedro"))
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    log_path = root / "pipeline.log"
    harness.say(f"running {' '.join(command)} in {project}")
    start = time.perf_counter()
    from mtl_reco.experiment.distributed import peak_rss_mb

    peak = 0.0
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [kedro, *command[1:]],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        # VmHWM only grows: its last reading is the peak up to that moment
        while proc.poll() is None:
            peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
            time.sleep(0.5)
        status = proc.returncode
    wall = time.perf_counter() - start
    text = log_path.read_text(encoding="utf-8", errors="replace")
    out: dict[str, Any] = {
        "command": " ".join(command[:-1]) + f' "{params}"',
        "rows": rows,
        "exit_status": status,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak, 1),
        "node_s": _node_seconds(text),
    }
    if out["exit_status"] != 0:
        out["log_tail"] = text.splitlines()[-5:]
        return out
    history = _latest(project / "data/06_models/mmoe/training_history.json")
    metrics = _latest(project / "data/08_reporting/mmoe/test_metrics.json")
    if history is not None:
        epoch = json.loads(history.read_text())["epochs"][0]
        out["train_samples_per_s"] = round(epoch["samples_per_s"])
        out["train_epoch_s"] = round(epoch["epoch_time_s"], 1)
    if metrics is not None:
        test = json.loads(metrics.read_text())["test"]
        out["test_auc"] = {t: v.get("auc") for t, v in test["tasks"].items()}
        out["test_rows"] = test.get("rows")
    return out


# -- report -----------------------------------------------------------------------
def report(doc: dict[str, Any]) -> tuple[list[Table], dict[str, Any], list[str]]:
    runs = doc["training"]
    table = Table(
        "Training (default MMoE, global batch 2048):",
        [
            ("total rows", ",.0f"),
            ("train rows", ",.0f"),
            ("data", ""),
            ("ranks", ""),
            ("samples/s", ",.0f"),
            ("vs memory, 1 rank", ".2f"),
            ("peak RSS MB (all processes)", ",.0f"),
            ("per rank", ""),
        ],
    )
    base = {
        (r["size"], r["ranks"]): r.get("samples_per_s")
        for r in runs
        if r["mode"] == "memory"
    }
    figures: dict[str, Any] = {}
    for r in runs:
        if "error" in r:
            table.rows.append(
                [
                    r["size"],
                    None,
                    r["mode"],
                    r["ranks"],
                    None,
                    None,
                    None,
                    f"failed: {r['error']}",
                ]
            )
            continue
        ref = base.get((r["size"], 1))
        ratio = r["samples_per_s"] / ref if ref else None
        per_rank = ", ".join(f"{v:,.0f}" for v in r["rank_peak_rss_mb"]) or "-"
        table.rows.append(
            [
                r["size"],
                r["train_rows"],
                r["mode"],
                r["ranks"],
                r["samples_per_s"],
                ratio,
                r["total_peak_rss_mb"],
                per_rank,
            ]
        )
    ok = [r for r in runs if "error" not in r]
    stream1 = [r for r in ok if r["mode"] == "stream" and r["ranks"] == 1]
    ratios = [
        r["samples_per_s"] / base[(r["size"], 1)]
        for r in stream1
        if base.get((r["size"], 1))
    ]
    if ratios:
        figures["stream_vs_memory_min"] = min(ratios)
        figures["stream_vs_memory_max"] = max(ratios)
    two = {(r["size"], r["mode"]): r["samples_per_s"] for r in ok if r["ranks"] == 2}
    one = {(r["size"], r["mode"]): r["samples_per_s"] for r in ok if r["ranks"] == 1}
    ddp = [two[k] / one[k] for k in two if k in one]
    if ddp:
        figures["two_ranks_vs_one_min"], figures["two_ranks_vs_one_max"] = (
            min(ddp),
            max(ddp),
        )
    largest = max((r for r in stream1), key=lambda r: r["size"], default=None)
    if largest:
        figures["stream_peak_rss_mb_largest"] = largest["total_peak_rss_mb"]
    limit = doc.get("memory_limit")
    notes = [
        f"Each row: a fresh process runs the training node for "
        f"{doc['config']['batches']} "
        "global batches (trainer.max_batches_per_epoch), 1 epoch, validation on 50,000 "
        "rows. Training files: the train split of "
        f"{doc['config']['base_rows']:,} simulated impressions, encoded by the "
        "pipeline's functions, repeated in row groups of 500,000 rows. samples/s "
        "includes the stream's first buffer fill; with 2 ranks each rank runs 1 "
        "thread on this 2-core machine (1 rank: 2 threads)."
    ]
    if limit:
        figures["memory_largest_total_rows"] = limit["largest_total_rows"]
        notes.append(
            f"Memory mode's peak RSS grows by {limit['bytes_per_row']:.0f} bytes per "
            f"training row (line through the sizes, {limit['intercept_mb']:,} MB "
            "at 0): "
            f"on this machine's {limit['machine_memory_mb']:,} MB it could train about "
            f"{limit['largest_train_rows']:,} training rows "
            f"({limit['largest_total_rows']:,} rows in all), an extrapolation."
        )
    tables = [table]
    pipe = doc.get("pipeline")
    if pipe:
        ptable = Table(
            "Whole run (data half included):",
            [
                ("rows", ",.0f"),
                ("exit", ""),
                ("wall s", ",.0f"),
                ("peak RSS MB", ",.0f"),
                ("train samples/s", ",.0f"),
                ("train epoch s", ",.0f"),
                ("test AUC ctr", ".4f"),
                ("test AUC ctcvr", ".4f"),
            ],
        )
        auc = pipe.get("test_auc", {})
        ptable.rows.append(
            [
                pipe["rows"],
                pipe["exit_status"],
                pipe["wall_s"],
                pipe["peak_rss_mb"],
                pipe.get("train_samples_per_s"),
                pipe.get("train_epoch_s"),
                auc.get("ctr"),
                auc.get("ctcvr"),
            ]
        )
        tables.append(ptable)
        figures["pipeline_peak_rss_mb"] = pipe["peak_rss_mb"]
        figures["pipeline_exit_status"] = pipe["exit_status"]
        slow = sorted(pipe["node_s"].items(), key=lambda kv: -kv[1])[:6]
        notes.append(
            f"Command: `{pipe['command']}`. Slowest nodes (s): "
            + ", ".join(f"{k} {v:,}" for k, v in slow)
            + "."
        )
    return tables, figures, notes


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["_train"]:
        _train_child(args[1])
        return 0
    opts = harness.parse(Options, args, __doc__ or "")
    result = harness.start(NAME, opts)
    root = Path(opts.workdir or tempfile.mkdtemp(prefix="mtl_reco_scale_"))
    try:
        files = _write_sizes(root, opts)
        runs = []
        for size in opts.sizes:
            for mode in opts.modes:
                for ranks in opts.ranks:
                    run = _measure(root, files[size], size, mode, ranks, opts.batches)
                    harness.say(json.dumps(run))
                    runs.append(run)
            files[size].unlink()
        pipeline = _pipeline(root, opts.pipeline_rows) if opts.pipeline_rows else None
    finally:
        if opts.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    result.results = {
        "training": runs,
        "memory_limit": _memory_limit(runs),
        "pipeline": pipeline,
    }
    return result.finish(report, opts.results_dir)


if __name__ == "__main__":
    raise SystemExit(main())
