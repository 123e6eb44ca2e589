"""The split stage of data processing."""
