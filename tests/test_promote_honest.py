"""Honest promotion: the margin over the study's best baseline on validation decides whether the
model may take ``champion``; ``promote.force`` overrides, with the reason printed and tagged."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from siamese.promote import promote
from siamese.tune import tune

from conftest import run_cli, tracking_overrides


@pytest.mark.slow
def test_a_winner_below_the_best_baseline_never_becomes_champion(make_cfg, store, digits_cache, tmp_path, capsys):
    tune(make_cfg(f"study_dir={tmp_path}/s", "study=h", "tuner.max_trials=1", "baselines=false", "confirm.top_k=0",
                  config="tune"))
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    parent = client.search_runs([client.get_experiment_by_name("digits").experiment_id], "tags.kind = 'study'")[0]
    trial_auc = parent.data.metrics["val_auc"]

    def baseline(name: str, val_auc: float, status: str = "FINISHED") -> str:
        """A baseline run of this study with a chosen validation AUC (the margin is what is tested)."""
        run = client.create_run(parent.info.experiment_id, run_name=f"baseline-{name}", tags={
            "mlflow.parentRunId": parent.info.run_id, "kind": "baseline", "baseline": name, "study": "h"})
        client.log_metric(run.info.run_id, "val_auc", val_auc)
        client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    def plan(*overrides: str) -> dict:
        return promote(make_cfg("study=h", "++data.n_train=600", "++data.n_test=200", *overrides, config="promote",
                                small=False))

    baseline("weak", trial_auc - 0.05)
    baseline("broken", trial_auc + 0.5, status="FAILED")  # a failed baseline judges nothing
    dry = plan("promote.dry_run=true")
    assert dry["alias"] == "champion" and dry["baseline"] == "weak"
    assert dry["margin"] == pytest.approx(0.05)
    assert f"margin over the best baseline (weak, val_auc={trial_auc - 0.05:.4f}) on validation: +0.0500" in capsys.readouterr().out

    baseline("strong", trial_auc + 0.01)
    refused = plan()
    out = capsys.readouterr().out
    assert refused["alias"] == "challenger" and refused["margin"] == pytest.approx(-0.01)
    assert "does not beat the best baseline strong's" in refused["reason"] and refused["reason"] in out
    version = client.get_model_version("siamese-digits", refused["version"])
    assert version.tags["beats_best_baseline"] == "false" and version.tags["best_baseline"] == "strong"
    assert version.tags["promotion"] == f"challenger: {refused['reason']}"
    assert "champion" not in client.get_registered_model("siamese-digits").aliases  # nothing to defend, still refused

    forced = plan("promote.force=true")
    assert forced["alias"] == "champion" and forced["reason"].startswith("forced: val_auc")
    assert str(client.get_registered_model("siamese-digits").aliases["champion"]) == forced["version"]

    # The CLI says the same in one run: margin line, the challenger decision and its reason.
    result = run_cli("promote", *tracking_overrides(store), f"++data.cache_dir={digits_cache}", "++data.n_train=600",
                     "++data.n_test=200", "study=h", "--dry-run")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "on validation: -0.0100" in result.stdout and "alias challenger" in result.stdout
