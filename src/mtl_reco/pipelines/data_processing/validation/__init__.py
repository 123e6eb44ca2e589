"""The validation stage of data processing."""
