"""Kedro pipelines: glue only (nodes call into sources/processing/modeling)."""
