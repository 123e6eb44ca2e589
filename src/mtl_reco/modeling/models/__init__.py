"""Multi-task architectures (one file each) and their registry."""
