"""The labels stage of data processing."""
