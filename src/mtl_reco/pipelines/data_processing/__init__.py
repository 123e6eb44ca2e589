"""The ``data_processing`` pipeline: source -> model-ready tensors.

Stages (each a folder with ``nodes.py`` + ``pipeline.py``; nesting them here
keeps ``find_pipelines`` from registering each stage on its own)::

    ingestion  -> raw_events, raw_schema
    validation -> validation_report, validation_summary, validation_status
    labels     -> labelled_events, task_spec, label_report
    split      -> train_events, valid_events, test_events, split_report
    encoding   -> feature_encoder, encoded_{train,valid,test}, feature_schema,
                  encoding_report
"""

from mtl_reco.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
