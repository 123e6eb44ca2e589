"""Project CLI: ``kedro run`` with one-line errors for the project's own failures.

Kedro loads ``<package>.cli`` and lets its ``cli`` group override built-in
commands. ``run`` here is Kedro's own ``run`` (same options, same behaviour)
plus ``--verbose``; what it changes is how a run that fails for a known
reason ends. A bad parameter, a missing input file, failed validation, a run
lock held by another process, a missing GPU or an ONNX parity failure prints
one line on stderr::

    error: trainer.device: device 'cuda' requested but CUDA is not available ...

and exits 1 (or 128 + the signal number when SIGTERM/SIGINT interrupted the
run), instead of a 70-line traceback. ``--verbose`` adds the last frames of
the traceback. Anything else (a bug) still shows its full traceback.
"""

from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

__all__ = ["cli", "run"]


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the run cannot do what was asked", not a bug."""
    from kedro.io.core import DatasetError
    from kedro.validation.exceptions import ParameterValidationError

    from mtl_reco.experiment.nodes import ParityError
    from mtl_reco.guard import RunInterrupted
    from mtl_reco.modeling.device import DeviceError
    from mtl_reco.modeling.models.base import ModelContractError
    from mtl_reco.modeling.trainer import TrainingError
    from mtl_reco.preflight import PreflightError
    from mtl_reco.processing.encoder import EncoderError
    from mtl_reco.processing.labels import LabelError
    from mtl_reco.processing.validation import DataValidationError
    from mtl_reco.runs import LockHeldError, StoreError
    from mtl_reco.sources.base import SourceError
    from mtl_reco.typed_config import ConfigError

    return (
        ConfigError,
        DataValidationError,
        DatasetError,
        DeviceError,
        EncoderError,
        LabelError,
        LockHeldError,
        ModelContractError,
        ParameterValidationError,
        ParityError,
        PreflightError,
        RunInterrupted,
        SourceError,
        StoreError,
        TrainingError,
    )


@click.group(name="mtl_reco")
def cli() -> None:
    """Project commands (override Kedro's ``run``)."""


@cli.command(
    name="run",
    params=[
        *kedro_run.params,
        click.Option(
            ["--verbose"],
            is_flag=True,
            help="On a known failure, show the traceback's last frames too.",
        ),
    ],
    help=kedro_run.help,
)
@click.pass_context
def run(ctx: click.Context, /, verbose: bool, **kwargs: Any) -> Any:
    """Kedro's ``run``, ending known failures with one line (see the module)."""
    try:
        return ctx.invoke(kedro_run, **kwargs)
    except Exception as error:
        from mtl_reco.guard import RunInterrupted, one_line

        cause = _known_cause(error, _user_errors())
        if cause is None:
            raise
        if verbose:
            traceback.print_exception(cause, limit=-6, file=sys.stderr)
        click.echo(f"error: {_parameter_errors(cause) or one_line(cause)}", err=True)
        code = 128 + cause.signum if isinstance(cause, RunInterrupted) else 1
        sys.exit(code)


_KEDRO_PARAMETER_ERROR = re.compile(
    r"^- Parameter '(?P<key>[^']+)': (?:Failed to instantiate \w+ for parameter "
    r"'[^']+': )?(?P<message>.*)$"
)


def _parameter_errors(cause: BaseException) -> str | None:
    """Kedro's parameter validation failure as one line (``None``: not one).

    Kedro validates typed ``params:`` inputs (our pydantic models) before
    the run and reports every failure as ``Parameter validation failed:`` and
    one ``- Parameter 'trainer': Failed to instantiate TrainerConfig for
    parameter 'trainer': <ConfigError>`` line each; that becomes
    ``trainer: <ConfigError>`` (several joined by ``; ``).
    """
    from kedro.validation.exceptions import ParameterValidationError

    if isinstance(cause, ParameterValidationError):
        parts = [
            f"{m['key']}: {m['message']}"
            for line in str(cause).splitlines()
            if (m := _KEDRO_PARAMETER_ERROR.match(line.strip()))
        ]
        if parts:
            return " ".join("; ".join(parts).split())
    return None


def _known_cause(
    error: BaseException, known: tuple[type[BaseException], ...]
) -> BaseException | None:
    """The project error behind ``error``, or ``None`` for anything else.

    Kedro wraps errors raised while a dataset loads or saves (a lazy table
    is computed while it is saved) in a ``DatasetError``; the wrapped error
    decides. A ``DatasetError`` that wraps nothing (a missing file) is known;
    one that wraps an unknown error is a bug and keeps its traceback.
    """
    from kedro.io.core import DatasetError

    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or (
            None if seen.__suppress_context__ else seen.__context__
        )
    for item in chain:
        if isinstance(item, known) and not isinstance(item, DatasetError):
            return item
    for item in chain:
        if _kedro_usage_error(item):
            return item
    if isinstance(chain[-1], DatasetError):
        return chain[-1]
    return None


def _kedro_usage_error(error: BaseException) -> bool:
    """A bad ``kedro run`` argument, reported by Kedro before any node runs.

    An unknown ``--pipelines`` or ``--from-nodes`` name, ``--tags`` that
    select no node, an unknown ``--env`` or ``--runner``: Kedro raises a
    ``ValueError``, ``KeyError``, ``AttributeError`` or its configuration
    error from its own framework, pipeline or config code.
    """
    from kedro.config import MissingConfigException

    if not isinstance(
        error, ValueError | KeyError | AttributeError | MissingConfigException
    ):
        return False
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return False
    origin = Path(frames[-1].filename).as_posix()
    return any(
        f"/kedro/{part}" in origin
        for part in ("framework/", "pipeline/", "config/", "utils.py")
    )
