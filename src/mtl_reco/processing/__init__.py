"""Data-side library: validation rules, labels, splits, feature encoding (no Kedro)."""
