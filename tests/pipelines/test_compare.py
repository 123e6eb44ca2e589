"""The comparison only puts experiments trained on the same dataset side by side."""

from __future__ import annotations

import logging

from mtl_reco.pipelines.compare.nodes import compare_experiments


def metrics(dataset: str | None, auc: float) -> dict:
    out = {
        "model": "mmoe",
        "weighting": "fixed",
        "best_epoch": 3,
        "test": {"tasks": {"income": {"auc": auc}}, "mean": {"auc": auc}},
    }
    if dataset is not None:
        out["dataset"] = dataset
    return out


def test_experiments_of_another_dataset_are_left_out(caplog):
    caplog.set_level(logging.INFO, logger="mtl_reco")
    table, _chart = compare_experiments(
        "census_income",
        mmoe=metrics("census_income", 0.948),
        esmm=metrics("simulated", 0.84),  # an older run on other data
        ple=None,  # never trained
        aitm=metrics(None, 0.947),  # written before metrics named their dataset
    )
    assert sorted(table["experiment"]) == ["aitm", "mmoe"]
    assert table.set_index("experiment").loc["mmoe", "income.auc"] == 0.948
    assert "esmm (simulated)" in caplog.text and "not trained yet" in caplog.text


def test_experiments_are_ranked_by_validation_not_test():
    def with_valid(test_auc: float, valid_auc: float | None) -> dict:
        out = metrics("census_income", test_auc)
        if valid_auc is not None:
            out["valid"] = {"mean": {"auc": valid_auc}}
        return out

    table, _chart = compare_experiments(
        "census_income",
        mmoe=with_valid(0.95, 0.930),  # best on test, second on validation
        ple=with_valid(0.94, 0.935),
        aitm=with_valid(0.99, None),  # no validation metric: no rank
    )
    assert table["experiment"].tolist() == ["ple", "mmoe", "aitm"]
    assert table["rank"].tolist()[:2] == [1, 2] and table["rank"].isna().iloc[2]
    assert table.columns[0] == "rank"
    assert table.set_index("experiment").loc["ple", "valid.mean.auc"] == 0.935
