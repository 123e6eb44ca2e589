"""Loss-weighting strategies (one file each) and their registry."""
