"""The encoding stage of data processing."""
