"""Seed confirmation: the top trials retrained with fresh seeds, the winner by mean, resumable."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from siamese.bundle import ModelBundle
from siamese.data import load_dataset
from siamese.tune import tune

from conftest import study_runs


@pytest.fixture
def confirm_cfg(make_cfg, tmp_path):
    def _make(*overrides: str):
        return make_cfg(f"study_dir={tmp_path}/study", "study=c", "tuner.max_trials=3", "seed=5",
                        "trial_figures=false", *overrides, config="tune")
    return _make


@pytest.mark.slow
def test_top_trials_are_retrained_with_fresh_seeds_and_the_best_mean_wins(confirm_cfg, store, tmp_path, capsys):
    tune(confirm_cfg("confirm.top_k=2", "confirm.seeds=1"))
    client, runs = study_runs(store)
    first = {r.info.run_id for r in runs["confirm"]}
    assert len(first) == 2
    # Resumed with one more seed: the finished confirmation runs are reused, only the new seed runs.
    result = tune(confirm_cfg("confirm.top_k=2", "confirm.seeds=2"))
    client, runs = study_runs(store)
    (parent,) = runs["study"]
    confirms, trials = runs["confirm"], runs["trial"]
    assert len(confirms) == 4 and first <= {r.info.run_id for r in confirms}
    ranked = sorted(trials, key=lambda r: -r.data.metrics["val_auc"])
    top = {r.data.tags["trial_id"] for r in ranked[:2]}
    assert {r.data.tags["trial_id"] for r in confirms} == top
    for run in confirms:
        assert run.info.status == "FINISHED" and run.data.tags["study"] == "c"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert "test_auc" not in run.data.metrics  # validation only, as trials
    assert sorted({int(r.data.tags["confirm_seed"]) for r in confirms}) == [6, 7]  # the trial used seed 5
    # The winner is the candidate with the best mean validation AUC over its seeds.
    by_trial = pd.DataFrame([(r.data.tags["trial_id"], r.data.metrics["val_auc"], r.info.run_id) for r in confirms],
                            columns=["trial", "val_auc", "run_id"])
    means = by_trial.groupby("trial")["val_auc"].agg(["mean", "std"])
    winner = means["mean"].idxmax()
    assert parent.data.tags["best_trial_id"] == winner == parent.data.tags["confirm_winner_trial_id"]
    assert parent.data.metrics["confirm_val_auc_mean"] == pytest.approx(means.loc[winner, "mean"])
    assert parent.data.metrics["confirm_val_auc_sd"] == pytest.approx(means.loc[winner, "std"])
    # The kept model is the winner's seed with the best validation AUC, and it is the parent's model.
    best = by_trial[by_trial["trial"] == winner].sort_values("val_auc").iloc[-1]
    assert parent.data.tags["best_run_id"] == best["run_id"] and parent.data.tags["best_model_source"] == "confirm"
    assert parent.data.metrics["val_auc"] == pytest.approx(best["val_auc"])
    assert result["test_auc"] == pytest.approx(parent.data.metrics["test_auc"])
    local = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="model", dst_path=str(tmp_path / "m"))
    data = load_dataset(confirm_cfg().data, 5)
    from sklearn.metrics import roc_auc_score

    # data.val is the study config's (data.preprocess=none: raw); the bundle applies the winner's own
    # preprocessing, which the space searches (a standardised winner scored 0.92 on raw vectors).
    assert roc_auc_score(data.val.y, ModelBundle.load(local).score(data.val)) == pytest.approx(best["val_auc"], abs=1e-6)
    # The margin over the best baseline uses the confirmed mean.
    base = max(r.data.metrics["val_auc"] for r in runs["baseline"])
    assert parent.data.metrics["margin_over_best_baseline"] == pytest.approx(means.loc[winner, "mean"] - base)
    assert parent.data.metrics["best_baseline_val_auc"] == pytest.approx(base)
    # Each candidate's mean and sd in the leaderboard, and on its trial run.
    board = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="leaderboard.csv",
                                                            dst_path=str(tmp_path / "b")))
    assert "confirm" not in set(board["kind"])
    rows = board[board["confirm_seeds"] == 2]
    assert len(rows) == 2
    trial_ids = {r.info.run_id: r.data.tags["trial_id"] for r in trials}
    for _, row in rows.iterrows():
        assert row["confirm_val_auc_mean"] == pytest.approx(means.loc[trial_ids[row["run_id"]], "mean"])
        assert client.get_run(row["run_id"]).data.metrics["confirm_val_auc_mean"] == pytest.approx(row["confirm_val_auc_mean"])
    out = capsys.readouterr().out
    assert "confirming the top 2 trials with 2 fresh seeds each ([6, 7])" in out and f"winner: trial {winner}" in out
    # Resumed once more with nothing new: no confirmation run is repeated.
    tune(confirm_cfg("confirm.top_k=2", "confirm.seeds=2"))
    _, again = study_runs(store)
    assert {r.info.run_id for r in again["confirm"]} == {r.info.run_id for r in confirms}


@pytest.mark.slow
def test_top_k_zero_turns_confirmation_off_and_the_parent_logs_the_data_overlap(confirm_cfg, store):
    tune(confirm_cfg("confirm.top_k=0", "tuner.max_trials=2"))
    _, runs = study_runs(store)
    (parent,) = runs["study"]
    assert "confirm" not in runs and "confirm_val_auc_mean" not in parent.data.metrics
    assert parent.data.tags["best_model_source"] == "restored"
    assert parent.data.metrics["test_pairs_seen_in_train"] == 0
    for run in runs["trial"] + runs["baseline"]:
        assert run.data.metrics["test_pairs_seen_in_train"] == 0 and run.data.metrics["val_pairs_seen_in_train"] == 0
    logistic = next(r for r in runs["baseline"] if r.data.tags["baseline"] == "logistic")
    assert float(logistic.data.params["C"]) in [1.0e-4, 3.16e-4, 1.0e-3, 3.16e-3, 1.0e-2, 3.16e-2, 0.1, 0.316, 1.0]
    assert logistic.data.params["features"] == "sum,absdiff,product,cosine"
    assert np.isfinite(logistic.data.metrics["val_auc"]) and np.isfinite(logistic.data.metrics["test_auc"])
