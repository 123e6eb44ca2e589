"""Data-parallel training of one experiment with PyTorch's elastic launcher.

``trainer.distributed.nproc_per_node > 1`` makes the training node start
that many worker processes with :func:`torch.distributed.launcher.api.elastic_launch`
(the engine behind ``torchrun``; several machines join through the same
rendezvous settings). Each worker:

1. joins the process group (``nccl`` on CUDA, else ``gloo``; on CUDA rank
   ``LOCAL_RANK`` uses ``cuda:<LOCAL_RANK>``);
2. builds the model and the loss weighting from the same seed (DDP also
   copies rank 0's parameters to every rank);
3. reads only its shard of the training split (an equal number of rows per
   rank; the last ``rows % world_size`` rows are left out) and its part of
   the validation split (every row, for metrics over the whole split), in
   memory or streamed as ``trainer.data`` resolved in the parent;
4. trains with :class:`~mtl_reco.modeling.trainer.Trainer`, which wraps the
   model in ``DistributedDataParallel``;
5. returns the trained state and the training record; the parent takes
   those of the lowest global rank it hosts (rank 0 on the first node), so
   only the parent process saves artefacts and talks to MLflow.

On the CPU each worker uses ``cpu_count // nproc_per_node`` threads unless
``trainer.num_threads`` says otherwise. A failing worker makes the launcher
stop the others and the node raise :class:`DistributedTrainingError` naming
the rank and its error.

No framework import here.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import distributed as dist

from mtl_reco.experiment.loading import load_split
from mtl_reco.experiment.streaming import shard_rows
from mtl_reco.modeling.config import TrainerConfig
from mtl_reco.modeling.device import resolve_device
from mtl_reco.modeling.models.registry import ModelSpec, build_model
from mtl_reco.modeling.trainer import TrainingError, train
from mtl_reco.modeling.weighting.registry import WeightingSpec, build_strategy
from mtl_reco.schema import FeatureSchema
from mtl_reco.tables import Table, as_table, count_rows

__all__ = [
    "DistributedJob",
    "DistributedTrainingError",
    "launch",
    "peak_rss_mb",
    "run_rank",
]

logger = logging.getLogger(__name__)


class DistributedTrainingError(TrainingError):
    """A rank of a data-parallel training failed (the message names it)."""


@dataclass(frozen=True)
class DistributedJob:
    """Everything a worker needs (pickled to each spawned process).

    Attributes:
        train: Encoded train split (a parquet table; each rank reads its shard).
        valid: Encoded validation split.
        feature_schema: The ``feature_schema`` artefact.
        model: Architecture and hyperparameters.
        weighting: Loss-weighting strategy.
        trainer: Training settings (``checkpoint_dir`` already resolved).
        data_mode: ``memory`` or ``stream`` (``auto`` resolved by the parent).
    """

    train: Table | pd.DataFrame
    valid: Table | pd.DataFrame
    feature_schema: dict[str, Any]
    model: ModelSpec
    weighting: WeightingSpec
    trainer: TrainerConfig
    data_mode: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_AGENT_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")


@contextmanager
def _signals_kept() -> Iterator[dict[int, Any]]:
    """Restore this process's signal handlers after the launcher replaced them.

    The elastic agent installs its own handlers (they stop the workers and
    raise ``SignalException``) and does not put the previous ones back; the
    caller's (the run guard's SIGTERM/SIGINT handling) must survive it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield {}
        return
    saved = {
        int(sig): signal.getsignal(sig)
        for sig in (getattr(signal, name, None) for name in _AGENT_SIGNALS)
        if sig is not None
    }
    try:
        yield saved
    finally:
        for number, handler in saved.items():
            if handler is not None:
                signal.signal(number, handler)


def launch(job: DistributedJob) -> dict[str, Any]:
    """Train ``job`` on ``nproc_per_node`` local ranks (and other nodes).

    Returns:
        What :func:`run_rank` returned on the lowest global rank of this node,
        with ``peak_rss_mb`` the list of this node's ranks' peaks.

    Raises:
        DistributedTrainingError: A rank failed; names it and its error.
    """
    from torch.distributed.elastic.multiprocessing import (
        DefaultLogsSpecs,
        SignalException,
    )
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    cfg = job.trainer.distributed
    endpoint = cfg.rdzv_endpoint or f"127.0.0.1:{_free_port()}"
    logger.info(
        "data-parallel training: %d rank(s) on this node, %d node(s), rendezvous %s",
        cfg.nproc_per_node,
        cfg.nnodes,
        endpoint,
    )
    with (
        tempfile.TemporaryDirectory(prefix="mtl_reco-ddp-") as logs,
        _signals_kept() as handlers,
    ):
        config = LaunchConfig(
            min_nodes=cfg.nnodes,
            max_nodes=cfg.nnodes,
            nproc_per_node=cfg.nproc_per_node,
            run_id=cfg.rdzv_id,
            rdzv_backend="c10d",
            rdzv_endpoint=endpoint,
            rdzv_configs={"timeout": cfg.rdzv_timeout_s},
            max_restarts=0,
            monitor_interval=0.2,
            start_method="spawn",
            logs_specs=DefaultLogsSpecs(log_dir=logs),
        )
        try:
            results = elastic_launch(config, run_rank)(job)
        except SignalException as exc:
            # the agent has stopped the ranks; now what this process would
            # have done on that signal (the run guard: interrupt the run)
            previous: Callable[..., Any] | int | None = handlers.get(int(exc.sigval))
            if callable(previous):
                signal.signal(int(exc.sigval), previous)
                previous(int(exc.sigval), None)
            raise
        except ChildFailedError as exc:
            rank, failure = exc.get_first_failure()
            message = failure.message
            if isinstance(message, dict):
                message = message.get("message", message)
            lines = str(message).strip().splitlines() or ["no message"]
            raise DistributedTrainingError(
                f"data-parallel training failed on rank {rank} "
                f"(exit code {failure.exitcode}): {lines[-1]}"
            ) from None
    outcome = dict(results[min(results)])
    outcome["peak_rss_mb"] = [results[r]["peak_rss_mb"] for r in sorted(results)]
    return outcome


def _configure_worker_logging(rank: int) -> None:
    """Rank 0 logs the training at INFO on stderr; the others warnings only."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[rank {rank}] %(levelname)s %(message)s"))
    root = logging.getLogger("mtl_reco")
    root.handlers = [handler]
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    root.propagate = False


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak resident memory of a process since it started its program, in MB.

    Linux's ``VmHWM`` (reset by ``exec``); ``getrusage``'s ``ru_maxrss``
    is not (a child started from a large process reports the parent's size),
    so it is the fallback for this process only, elsewhere.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    if pid == "self":
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return None


def run_rank(job: DistributedJob) -> dict[str, Any]:
    """Body of one rank (started by :func:`launch` or by ``torchrun``).

    Reads ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE``
    from the environment the launcher sets, joins the process group and
    trains this rank's shard.

    Returns:
        ``{"state": state_dict on the CPU, "result": TrainResult.to_dict(),
        "world_size": ..., "peak_rss_mb": this process's peak RSS}``.
    """
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ["WORLD_SIZE"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    _configure_worker_logging(rank)
    cfg = job.trainer
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = cfg.distributed.backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    threads = cfg.num_threads
    if threads is None and device.type == "cpu":
        threads = max(1, (os.cpu_count() or 1) // local_world)
    config = TrainerConfig.from_dict(
        {**cfg.to_dict(), "device": str(device), "num_threads": threads}
    )
    dist.init_process_group(backend)
    try:
        schema = FeatureSchema.from_dict(job.feature_schema)
        torch.manual_seed(cfg.seed)  # the same initialisation on every rank
        net = build_model(
            job.model.name, schema, job.model.tasks, job.model.build_config()
        )
        strategy = build_strategy(
            job.weighting.name, net.task_names, job.weighting.build_config()
        )
        tasks = list(net.task_names)
        train_rows = shard_rows(
            count_rows(as_table(job.train)), rank, world, equal=True
        )
        valid_rows = shard_rows(
            count_rows(as_table(job.valid)), rank, world, equal=False
        )
        train_table = load_split(
            job.train, schema, tasks, config, job.data_mode, rows=train_rows
        )
        valid_table = load_split(
            job.valid, schema, tasks, config, job.data_mode, rows=valid_rows
        )
        logger.info(
            "rank %d/%d: %d training rows %s, %d validation rows, %s, device %s",
            rank,
            world,
            len(train_table),
            train_rows,
            len(valid_table),
            job.data_mode,
            device,
        )
        result = train(net, train_table, valid_table, strategy, config)
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        return {
            "state": state,
            "result": result.to_dict(),
            "world_size": world,
            "peak_rss_mb": peak_rss_mb(),
        }
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """``torchrun ... -m mtl_reco.experiment.distributed``: train from files.

    For clusters whose scheduler starts ``torchrun`` itself: every rank reads
    the encoded splits and the feature schema that ``kedro run
    --pipelines=data_processing`` wrote, trains its shard, and rank 0 writes
    the model (``model_state.pt``, ``model_spec.json``) and the
    ``training_history.json`` to ``--out``.
    """
    import argparse
    import json
    from pathlib import Path

    from mtl_reco.experiment.loading import resolve_data_mode
    from mtl_reco.tables import ParquetTable

    parser = argparse.ArgumentParser(prog="python -m mtl_reco.experiment.distributed")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument(
        "--model", default='{"name": "mmoe"}', help="model block (JSON)"
    )
    parser.add_argument("--weighting", default='{"name": "fixed"}', help="JSON")
    parser.add_argument("--trainer", default="{}", help="trainer block (JSON)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    folder = args.data_dir / "05_model_input"
    schema = json.loads((folder / "feature_schema.json").read_text())
    train_table = ParquetTable(folder / "encoded_train.parquet")
    valid_table = ParquetTable(folder / "encoded_valid.parquet")
    trainer = TrainerConfig.from_dict(
        {"checkpoint_dir": None, **json.loads(args.trainer)}
    )
    mode = resolve_data_mode(
        trainer.data, [train_table, valid_table], FeatureSchema.from_dict(schema)
    )
    job = DistributedJob(
        train_table,
        valid_table,
        schema,
        ModelSpec.from_dict(json.loads(args.model)),
        WeightingSpec.from_dict(json.loads(args.weighting)),
        trainer,
        mode,
    )
    outcome = run_rank(job)
    if int(os.environ["RANK"]) == 0:
        net = build_model(
            job.model.name,
            FeatureSchema.from_dict(schema),
            job.model.tasks,
            job.model.build_config(),
        )
        net.load_state_dict(outcome["state"])
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save(outcome["state"], args.out / "model_state.pt")
        (args.out / "model_spec.json").write_text(json.dumps(net.spec(), indent=2))
        (args.out / "training_history.json").write_text(
            json.dumps(outcome["result"], indent=2, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
