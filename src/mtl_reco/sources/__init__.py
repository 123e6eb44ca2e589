"""Raw-data sources: readers and the simulator (plain pandas/pyarrow, no Kedro)."""
