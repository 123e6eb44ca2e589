"""Kedro project settings.

* ``oc.env`` is registered so configuration can read environment variables
  (``MLFLOW_TRACKING_URI``, ``MTL_RECO_SHARED_DATA``).
* Configuration lives in ``conf/``: ``base`` (committed defaults), ``local``
  (git-ignored, machine-specific) and ``test`` (tiny, fast settings used by
  the test suite: ``kedro run --env test``).
* :class:`~mtl_reco.guard.RunGuardHook` makes every run safe to leave alone:
  checks before the first node, one run at a time per data folder, outputs
  that become current only when the run succeeds (see :mod:`mtl_reco.guard`).
* MLflow tracking is kedro-mlflow's (``conf/<env>/mlflow.yml``, ``kedro mlflow
  ui``) with one child run per experiment and registered ONNX models added by
  :class:`~mtl_reco.hooks.ExperimentTrackingHook`, a subclass of its hook.
  The plugin's own hook instance is disabled, so a run is tracked once.
"""

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

from mtl_reco.guard import RunGuardHook
from mtl_reco.hooks import ExperimentTrackingHook

# The guard's hooks are marked tryfirst: its checks and lock come before the
# MLflow runs are opened, and its promotion before they are closed.
HOOKS = (ExperimentTrackingHook(), RunGuardHook())
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow",)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"oc.env": oc.env},
    # conf/test and conf/local override single keys of a parameter block
    # (e.g. sources.simulated.n_rows) or of mlflow.yml instead of replacing
    # the whole block.
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
}
