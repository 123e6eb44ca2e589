"""Run a script as it would run on a bare GPU machine with PyTorch.

``python tests/benchmarks/_bare_python.py SCRIPT ARGS...`` runs ``SCRIPT``
as ``__main__`` with the project's heavier dependencies made unimportable
(Kedro and its plugins, MLflow, Great Expectations, Torch-RecHub, DuckDB,
Ibis, PySpark, scikit-learn, SciPy, matplotlib): a GPU machine carries only
PyTorch, numpy, pandas, pyarrow, ONNX and onnxruntime (and the wheels
``make gpu-wheels`` brings). A blocked package looks absent: ``import``
raises ``ModuleNotFoundError`` and ``importlib.util.find_spec`` returns
``None``, so optional imports inside other libraries behave as they would
there.
"""

from __future__ import annotations

import os
import runpy
import sys

BLOCKED = frozenset(
    {
        "kedro",
        "kedro_datasets",
        "kedro_viz",
        "kedro_mlflow",
        "mlflow",
        "great_expectations",
        "torch_rechub",
        "duckdb",
        "ibis",
        "pyspark",
        "sklearn",
        "scipy",
        "matplotlib",
    }
)


def main() -> None:
    for name in BLOCKED:  # `import` raises ModuleNotFoundError, find_spec: None
        sys.modules[name] = None  # type: ignore[assignment]
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python SCRIPT`
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
