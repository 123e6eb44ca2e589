"""Kedro project settings.

* ``oc.env`` is registered so configuration can read environment variables
  (``MLFLOW_TRACKING_URI``, ``MTL_RECO_SHARED_DATA``).
* Configuration lives in ``conf/``: ``base`` (committed defaults), ``local``
  (git-ignored, machine-specific) and ``test`` (tiny, fast settings used by
  the test suite: ``kedro run --env test``).
"""

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"oc.env": oc.env},
}
