"""Wiring of the scoring pipeline.

Run it with the experiment and the input chosen on the command line::

    kedro run --pipeline=score --params \
      "score.experiment=ple,score.source=ali_ccp,score.options.path=new.csv"
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mtl_reco.pipelines.score.nodes import score_new_data


def create_pipeline(**kwargs: object) -> Pipeline:
    """One node: raw file -> encoded -> ONNX probabilities (parquet)."""
    return Pipeline(
        [
            Node(
                score_new_data,
                inputs=["feature_encoder", "scoring_model", "params:score"],
                outputs="scored_predictions",
                name="score_new_data",
                tags=["score"],
            )
        ]
    )
