"""Checks that run before the first node of every ``kedro run``.

A scheduled run must not spend twenty minutes on data processing to then fail
on something knowable at the start. :func:`check_run` (called by
:class:`mtl_reco.guard.RunGuardHook` before the run takes its lock) checks:

* every top-level parameter block is one the project reads (a misspelt
  ``--params traine.epochs=3`` is an error with a suggestion, not ignored;
  a block with ``model`` but no ``weighting``, or the reverse, is a half
  experiment and says so);
* the ``dataset`` names a registered source, its options are valid and its
  input files exist (reading the source's schema, not its rows);
* the training device is available (``trainer.device=cuda`` on a machine
  without a GPU fails here);
* every experiment in the run can train on the dataset's tasks (ESMM needs a
  click -> conversion funnel; a model's ``tasks`` must be tasks of the data);
* every input the run reads but does not produce (a trained model for
  ``score``, the encoded splits for ``--from-nodes mmoe.train``) exists,
  and a trained model it reads was trained with the current feature encoder.

:func:`applicable_experiments` answers the same requirement question for the
pipeline registry, which leaves an experiment that cannot train on the
configured data out of ``__default__`` with one warning line.

The dataset's tasks come from the configuration (source schema + ``labels``)
when the run includes data processing, else from the current
``feature_schema`` artefact.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kedro.io import MemoryDataset
from kedro.pipeline import Pipeline

from mtl_reco.experiment import EXPERIMENT_KEYS, trained_experiments

logger = logging.getLogger(__name__)

HOOK_BLOCKS = frozenset({"runs"})
"""Top-level parameter blocks read by hooks rather than by nodes."""


class PreflightError(ValueError):
    """A run cannot start; the message says why and what to change."""


@dataclass(frozen=True)
class DatasetTasks:
    """The tasks a run will train on.

    Attributes:
        dataset: Source name.
        tasks: Task names, in order.
        funnel: ``(click task, conversion task)`` when the tasks form a
            click -> conversion funnel, else ``None``.
        origin: Where this was read (``configuration`` or the artefact).
    """

    dataset: str
    tasks: tuple[str, ...]
    funnel: tuple[str, str] | None
    origin: str

    def describe(self) -> str:
        """``dataset 'census_income' (tasks income, marital; no funnel)``."""
        funnel = (
            f"funnel {self.funnel[0]} -> {self.funnel[1]}"
            if self.funnel
            else "no click -> conversion funnel"
        )
        return f"dataset '{self.dataset}' (tasks {', '.join(self.tasks)}; {funnel})"


# -- the data's tasks ---------------------------------------------------------------
def configured_tasks(params: Mapping[str, Any]) -> DatasetTasks:
    """The tasks data processing will produce with these parameters.

    Opens the source lazily (options checked, input files checked to exist
    and be non-empty, no rows read) and plans the labels.

    Raises:
        PreflightError: Unknown dataset (with a suggestion), bad source
            options or a missing input file.
    """
    from mtl_reco.processing.config import LabelsConfig, SourcesConfig
    from mtl_reco.processing.labels import LabelError, plan_labels
    from mtl_reco.sources.base import SourceError
    from mtl_reco.sources.registry import available_sources, read_source
    from mtl_reco.typed_config import ConfigError

    dataset = params.get("dataset")
    known = available_sources()
    if dataset not in known:
        raise PreflightError(
            f"unknown dataset {dataset!r}{_did_you_mean(str(dataset), known)}; "
            f"choose one of {', '.join(known)}"
        )
    try:
        options = SourcesConfig.from_dict(params.get("sources")).for_source(dataset)
        schema, _ = read_source(dataset, options)
        plan = plan_labels(schema, LabelsConfig.from_dict(params.get("labels")))
    except (SourceError, ConfigError, LabelError) as exc:
        raise PreflightError(f"dataset {dataset!r}: {exc}") from None
    funnel = (plan.funnel.click, plan.funnel.conversion) if plan.funnel else None
    return DatasetTasks(
        str(dataset), tuple(t.name for t in plan.tasks), funnel, "configuration"
    )


def schema_tasks(feature_schema: Mapping[str, Any], dataset: str) -> DatasetTasks:
    """The tasks recorded in a ``feature_schema`` artefact."""
    funnel = feature_schema.get("funnel")
    return DatasetTasks(
        dataset,
        tuple(t["name"] for t in feature_schema.get("tasks", ())),
        (funnel["click"], funnel["conversion"]) if funnel else None,
        "feature_schema",
    )


# -- experiments --------------------------------------------------------------------
def experiment_problem(
    experiment: str, params: Mapping[str, Any], data: DatasetTasks
) -> str | None:
    """Why ``experiment`` cannot train on ``data`` (``None`` when it can)."""
    from mtl_reco.modeling.models.registry import get_model_class
    from mtl_reco.typed_config import ConfigError

    block = params.get(experiment) or {}
    model = block.get("model") or {}
    name = model.get("name", "mmoe")
    try:
        cls = get_model_class(name)
    except ConfigError as exc:
        return str(exc)
    if cls.requires_funnel and data.funnel is None:
        return (
            f"model {name} needs a click -> conversion funnel and "
            f"{data.describe()} has none"
        )
    wanted = model.get("tasks")
    if wanted:
        missing = [t for t in wanted if t not in data.tasks]
        if missing:
            return (
                f"{experiment}.model.tasks names {missing}, which are not tasks of "
                f"{data.describe()}"
            )
    return None


def applicable_experiments(
    experiments: Iterable[str], params: Mapping[str, Any] | None
) -> tuple[list[str], dict[str, str]]:
    """Split ``experiments`` into those that can train on the configured data.

    Args:
        experiments: Experiment names (parameter blocks).
        params: The run's raw parameters; ``None`` (not known, e.g. outside a
            session) keeps every experiment.

    Returns:
        The applicable experiments, and ``{experiment: reason}`` for the rest.
        When the data cannot be inspected (unknown dataset, missing file)
        every experiment is kept: :func:`check_run` then reports the cause.
    """
    names = list(experiments)
    if params is None:
        return names, {}
    try:
        data = configured_tasks(params)
    except PreflightError:
        return names, {}
    left_out = {}
    for exp in names:
        problem = experiment_problem(exp, params, data)
        if problem is not None:
            left_out[exp] = problem
    return [e for e in names if e not in left_out], left_out


# -- the checks before the first node ------------------------------------------------
def check_run(
    params: Mapping[str, Any],
    pipeline: Pipeline,
    catalog: Any,
    registered: Mapping[str, Pipeline],
    load_versions: Mapping[str, str] | None = None,
) -> list[str]:
    """Check everything about this run that can be checked before it starts.

    Args:
        params: The run's raw parameters (files merged with ``--params``).
        pipeline: The (filtered) pipeline about to run.
        catalog: The run's data catalog.
        registered: Every registered pipeline (which blocks exist).
        load_versions: ``--load-versions`` of the run.

    Returns:
        Notes worth one log line each (e.g. AITM's calibrator being off).

    Raises:
        PreflightError: The first problem found, in one line.
    """
    _check_blocks(params, registered)
    nodes = pipeline.nodes
    reads = {i for n in nodes for i in n.inputs}
    experiments = trained_experiments(nodes)
    data: DatasetTasks | None = None
    if "params:dataset" in reads or "params:sources" in reads:
        data = configured_tasks(params)
    elif experiments and "feature_schema" not in pipeline.all_outputs():
        feature_schema = _load_if_exists(catalog, "feature_schema")
        if feature_schema is not None:
            data = schema_tasks(feature_schema, str(params.get("dataset")))
    if "params:trainer" in reads:
        _check_device((params.get("trainer") or {}).get("device", "auto"))
        _check_compile(params, experiments)
    notes = []
    if data is not None:
        for exp in experiments:
            problem = experiment_problem(exp, params, data)
            if problem is not None:
                raise PreflightError(
                    f"experiment '{exp}' cannot train here: {problem}; run other "
                    "experiments, or declare a funnel (labels.tasks, labels.funnel)"
                )
            notes.extend(_notes(exp, params, data))
    _check_inputs(pipeline, catalog, params, load_versions or {})
    _check_models_match_data(pipeline, catalog)
    return notes


def _check_blocks(
    params: Mapping[str, Any], registered: Mapping[str, Pipeline]
) -> None:
    known = set(HOOK_BLOCKS)
    for pipe in registered.values():
        for node in pipe.nodes:
            for name in node.inputs:
                if name == "parameters":
                    return  # a node reads every block: nothing is unknown
                if name.startswith("params:"):
                    known.add(name[len("params:") :].split(".")[0])
    unknown = sorted(k for k in params if k not in known)
    for name in unknown:
        block = params[name]
        if not isinstance(block, Mapping):
            continue
        has = [k for k in EXPERIMENT_KEYS if k in block]
        if len(has) == 1:
            lacking = next(k for k in EXPERIMENT_KEYS if k not in has)
            raise PreflightError(
                f"parameter block '{name}' has '{has[0]}' but no '{lacking}': an "
                "experiment block needs both model and weighting"
            )
    if unknown:
        parts = [f"'{k}'{_did_you_mean(k, sorted(known))}" for k in unknown]
        raise PreflightError(
            f"unknown parameter block {', '.join(parts)}; the blocks are "
            f"{', '.join(sorted(known))}"
        )


def _check_device(device: str) -> None:
    from mtl_reco.modeling.device import DeviceError, resolve_device

    try:
        resolve_device(device)
    except DeviceError as exc:
        raise PreflightError(f"trainer.device: {exc}") from None


def _check_compile(params: Mapping[str, Any], experiments: Iterable[str]) -> None:
    """``trainer.compile`` with a strategy a compiled backward cannot run."""
    from mtl_reco.modeling.weighting.registry import STRATEGIES

    if not (params.get("trainer") or {}).get("compile"):
        return
    for exp in experiments:
        name = ((params.get(exp) or {}).get("weighting") or {}).get("name", "fixed")
        cls = STRATEGIES.get(name)
        if cls is not None and cls.reuses_graph:
            raise PreflightError(
                f"trainer.compile: experiment '{exp}' uses the loss weighting "
                f"'{name}', which backpropagates through each batch more than once "
                "(a torch.compile'd backward cannot); set trainer.compile=false "
                "or choose fixed, uwl or dwa"
            )


def _notes(exp: str, params: Mapping[str, Any], data: DatasetTasks) -> list[str]:
    model = (params.get(exp) or {}).get("model") or {}
    alpha = (model.get("params") or {}).get("calibrator_alpha", 0.6)
    if model.get("name") == "aitm" and data.funnel is None and alpha:
        return [
            f"{exp}: AITM's calibrator is off ({data.describe()}: the tasks are "
            "not steps of one funnel)"
        ]
    return []


def _check_inputs(
    pipeline: Pipeline,
    catalog: Any,
    params: Mapping[str, Any],
    load_versions: Mapping[str, str],
) -> None:
    """Every dataset the run reads but does not write must already exist."""
    from mtl_reco.sources.registry import file_sources

    missing = []
    for name in sorted(pipeline.inputs()):
        if name.startswith("params:") or name == "parameters":
            continue
        dataset = catalog.get(name)
        source = name.removesuffix("_files")
        if dataset is None and name.endswith("_files") and source in file_sources():
            raise PreflightError(
                f"source '{source}' reads files but the catalog has no entry "
                f"'{name}': declare it in conf/base/catalog.yml (type "
                "mtl_reco.datasets.SourceFilesDataset, files: its path or "
                "train/valid/test files)"
            )
        if dataset is None or isinstance(dataset, MemoryDataset):
            continue
        if getattr(dataset, "missing_ok", False):
            continue
        if not dataset.exists():
            where = getattr(dataset, "_filepath", None)
            if name in load_versions:
                raise PreflightError(
                    f"--load-versions: version {load_versions[name]} of '{name}' "
                    f"does not exist" + (f" ({where})" if where else "")
                )
            if name.startswith("scoring_"):
                experiment = (params.get("score") or {}).get("experiment")
                raise PreflightError(
                    f"no trained model for score.experiment={experiment!r}"
                    + (f" ({where})" if where else "")
                    + f": train it first (`kedro run --pipelines=train_{experiment}`) "
                    "or name a trained experiment"
                )
            missing.append(f"'{name}'" + (f" ({where})" if where else ""))
    if missing:
        raise PreflightError(
            f"input(s) {', '.join(missing)} do not exist yet: run the pipeline "
            "that writes them first (e.g. `kedro run --pipelines=data_processing` "
            "or `kedro run --pipelines=train_<experiment>`)"
        )


def _check_models_match_data(pipeline: Pipeline, catalog: Any) -> None:
    """A trained model the run reads must match the current feature encoder.

    After ``data_processing`` alone has run on new data, the models trained
    before it still exist; evaluating or scoring one on data encoded with the
    new vocabularies would feed it ids that mean other values. The ONNX model
    scoring reads is checked itself (a partial run may have retrained the
    PyTorch model without exporting it again).
    """
    from mtl_reco.processing.encoder import model_encoder_mismatch
    from mtl_reco.serving import read_description

    free = pipeline.inputs()
    models = sorted(
        n
        for n in free
        if n.endswith((".model_spec", ".onnx_model")) or n == "scoring_model"
    )
    if not models or "feature_encoder" in pipeline.all_outputs():
        return
    encoder = _load_if_exists(catalog, "feature_encoder")
    if encoder is None:
        return
    for name in models:
        loaded = _load_if_exists(catalog, name)
        if loaded is None:
            continue
        if isinstance(loaded, bytes | bytearray):  # an ONNX model
            loaded = read_description(bytes(loaded)).get("provenance") or {}
        problem = model_encoder_mismatch(loaded, encoder)
        if problem:
            raise PreflightError(f"'{name}': {problem}")


def _load_if_exists(catalog: Any, name: str) -> Any:
    dataset = catalog.get(name)
    if dataset is None or not dataset.exists():
        return None
    return dataset.load()


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# -- the parameters of the session being created -------------------------------------
_ACTIVE: dict[str, Any] = {}


def remember_parameters(params: Mapping[str, Any]) -> bool:
    """Record the raw parameters of the session being created.

    Returns:
        Whether they differ from the ones recorded before (so pipelines built
        from the old ones must be rebuilt).
    """
    changed = _ACTIVE.get("params") != params
    _ACTIVE["params"] = dict(params)
    return changed


def active_parameters() -> dict[str, Any] | None:
    """The raw parameters of the current session (``None`` outside one)."""
    return _ACTIVE.get("params")


def forget_parameters() -> None:
    """Forget the recorded parameters (as if no session had been created)."""
    _ACTIVE.pop("params", None)
