"""The report's table as printed: columns named like the metrics, sd blank for a group of one run."""

from __future__ import annotations

import pandas as pd

from siamese.report import by_choice, render, table


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": ["a" * 32, "b" * 32, "c" * 32, "d" * 32], "status": ["FINISHED"] * 4,
        "tags.kind": ["trial", "trial", "trial", "baseline"], "tags.study": ["s"] * 4,
        "tags.mlflow.runName": ["s/trial-0", "s/trial-1", "s/trial-2", "s/baseline-cosine"],
        "metrics.val_auc": [0.9, 0.8, 0.7, 0.85], "metrics.val_accuracy": [0.81, 0.72, 0.63, 0.74],
        "params.loss.name": ["bce", "bce", "contrastive", None]})


def test_table_names_val_accuracy_and_runs_within_their_study():
    board = table(_frame(), "val_auc", "max", top=10)
    assert list(board.columns) == ["#", "run", "val_auc", "val_accuracy", "params", "run_id"]
    assert list(board["run"]) == ["trial-0", "trial-1", "trial-2", "baseline-cosine"]
    assert list(board["val_accuracy"]) == [0.81, 0.72, 0.63, 0.74]


def test_sd_is_blank_for_a_group_of_one():
    groups = by_choice(_frame(), ["loss"], "val_auc")["loss"]
    assert groups.loc["bce", "count"] == 2 and groups.loc["contrastive", "count"] == 1
    text = render(groups.reset_index().rename(columns=lambda c: "loss" if c.startswith("params.") else c))
    lines = text.splitlines()
    assert lines[0].split() == ["loss", "count", "mean", "sd", "max"]
    bce = next(line.split() for line in lines if line.split()[0] == "bce")
    contrastive = next(line.split() for line in lines if line.split()[0] == "contrastive")
    assert bce[3] == f"{pd.Series([0.9, 0.8]).std():.4f}"
    assert contrastive == ["contrastive", "1", "0.7000", "0.7000"]  # no sd, not NaN


def test_a_mistyped_by_key_names_the_closest_parameter():
    import pytest

    from siamese.errors import UserError

    frame = _frame().assign(**{"params.model.distance": ["l1", "l2", "l1", None]})
    with pytest.raises(UserError, match=r"report.by: 'model.distnce' is not a parameter of this study's trials "
                                        r"\(did you mean 'model.distance'\?\)"):
        by_choice(frame, ["model.distnce"], "val_auc")
    with pytest.raises(UserError, match=r"\(its parameters: loss, model.distance\)"):
        by_choice(frame, ["zzz"], "val_auc")
