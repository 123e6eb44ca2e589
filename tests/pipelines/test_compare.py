"""The comparison only puts experiments trained on the same dataset side by side."""

from __future__ import annotations

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
