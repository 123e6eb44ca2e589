"""Wiring of the scoring pipeline.

Run it with the experiment and the input chosen on the command line::

    kedro run --pipelines=score --params \
      "score.experiment=ple,score.source=ali_ccp,score.options.path=new.csv"
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from mtl_reco.pipelines.score.nodes import report_scoring, score_new_data


def create_pipeline(**kwargs: object) -> Pipeline:
    """Raw file -> validated, encoded -> ONNX scores (parquet) -> scoring report.

    ``report_scoring`` reads ``scored_predictions``, so it runs after the lazy
    scores were written and the statistics they fill are complete.
    """
    return Pipeline(
        [
            Node(
                score_new_data,
                inputs=[
                    "feature_encoder",
                    "scoring_model",
                    "raw_schema",
                    "params:score",
                    "params:validation",
                ],
                outputs=["scored_predictions", "scoring_stats"],
                name="score_new_data",
            ),
            Node(
                report_scoring,
                inputs=["scored_predictions", "scoring_stats"],
                outputs="scoring_report",
                name="report_scoring",
            ),
        ],
        tags="score",
    )
