"""Reporting helpers: training/ROC plots and the cross-experiment comparison.

Plain matplotlib/pandas (no Kedro); the figures are saved by the catalog.
"""
