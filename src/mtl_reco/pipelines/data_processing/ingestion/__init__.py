"""The ingestion stage of data processing."""
