from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from siamese.errors import ConfigError
from siamese.search import parse_space
from siamese.tune import tune

from conftest import study_runs


@pytest.fixture
def study_cfg(make_cfg, tmp_path):
    def _make(*overrides: str):
        # Seed confirmation has its own tests (test_confirm.py); here the search alone.
        return make_cfg(f"study_dir={tmp_path}/study", "study=t", "tuner.max_trials=3", "confirm.top_k=0", *overrides,
                        config="tune")
    return _make


@pytest.mark.slow
@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband", "grid"])
def test_three_trial_study_per_tuner(study_cfg, store, tuner):
    extra = ["tuner.oracle.max_epochs=3"] if tuner == "hyperband" else []
    result = tune(study_cfg(f"tuner={tuner}", *extra))
    client, runs = study_runs(store)
    (parent,) = runs["study"]
    trials, base = runs["trial"], runs["baseline"]
    assert len(trials) == 3 and parent.info.status == "FINISHED"
    assert sorted(b.data.tags["baseline"] for b in base) == ["cosine", "logistic"]
    for child in trials + base:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.data.tags["tuner"] == tuner and parent.data.tags["objective"] == "val_auc"
    assert parent.data.tags["data_train_sha256"] and parent.data.tags["space_hash"]
    for trial in trials:
        assert trial.info.status == "FINISHED"
        assert "model.distance" in trial.data.params and "trial_id" in trial.data.params
        history = client.get_metric_history(trial.info.run_id, "val_loss")
        assert [m.step for m in history] == list(range(len(history))) and len(history) >= 1
        assert "test_auc" not in trial.data.metrics  # test is never looked at during the search
        # The trial's time on the study's path lies within its run (start to end, ms), give or take
        # the run's creation just before the clock starts.
        assert 0 < trial.data.metrics["trial_seconds"] <= (trial.info.end_time - trial.info.start_time) / 1000 + 1
        assert {a.path for a in client.list_artifacts(trial.info.run_id, "plots")} >= {"plots/roc.png", "plots/learning_curves.png"}
    best_auc = max(r.data.metrics["val_auc"] for r in trials)  # ties are possible
    chosen = next(r for r in trials if r.info.run_id == parent.data.tags["best_trial_run_id"])
    assert chosen.data.metrics["val_auc"] == best_auc
    assert parent.data.metrics["val_auc"] == pytest.approx(best_auc)
    assert result["test_auc"] == pytest.approx(parent.data.metrics["test_auc"])
    # The baseline comparison, recomputed from the runs: best trial's val_auc vs the best baseline's.
    best_baseline = max(b.data.metrics["val_auc"] for b in base)
    margin = parent.data.metrics["val_auc"] - best_baseline
    assert parent.data.metrics["best_baseline_val_auc"] == pytest.approx(best_baseline)
    assert parent.data.metrics["margin_over_best_baseline"] == pytest.approx(margin)
    assert parent.data.tags["beats_best_baseline"] == ("true" if margin > 0 else "false")
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"leaderboard.csv", "best_params.json", "model", "plots", "search_space.yaml", "config.yaml"} <= names
    # The parent's params: the study's settings and the winner's values, not the space flattened.
    params = parent.data.params
    assert params["study"] == "t" and params["tuner.name"] == tuner and params["tuner.max_trials"] == "3"
    assert not any(k.startswith("search.params") for k in params)
    assert {k: v for k, v in params.items() if k.startswith("best.")} == {
        f"best.{k}": v for k, v in chosen.data.params.items() if k != "trial_id"}
    assert all(r.info.run_name == f"t/trial-{r.data.tags['trial_id']}" for r in trials)
    assert sorted(b.info.run_name for b in base) == ["t/baseline-cosine", "t/baseline-logistic"]
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/objective_by_trial.png", "plots/objective_vs_params.png"} <= plots


@pytest.mark.slow
def test_resume_reuses_parent_and_skips_finished_trials(study_cfg, store):
    tune(study_cfg("tuner.max_trials=2"))
    _, first = study_runs(store)
    tune(study_cfg("tuner.max_trials=4"))
    _, runs = study_runs(store)
    assert len(runs["study"]) == 1 and runs["study"][0].info.run_id == first["study"][0].info.run_id
    assert len(runs["trial"]) == 4
    assert {r.info.run_id for r in first["trial"]} <= {r.info.run_id for r in runs["trial"]}
    assert len(runs["baseline"]) == 2  # not run again


@pytest.mark.slow
def test_nan_trial_is_failed_and_study_completes(study_cfg, store, capsys):
    cfg = study_cfg("tuner=grid", "tuner.max_trials=2", "baselines=false", "optimizer=rmsprop")
    cfg.search.params = {"optimizer.learning_rate": {"type": "choice", "values": [1.0e-3, 1.0e30]}}
    result = tune(cfg)
    # Without baselines the summary says so, instead of "NOT beaten by +nan"; no verdict tag either.
    summary = [ln for ln in capsys.readouterr().out.splitlines() if "trials completed" in ln][-1]
    assert summary.endswith("; no finished baseline to compare with") and "nan" not in summary
    _, runs = study_runs(store)
    status = {r.data.params["optimizer.learning_rate"]: r.info.status for r in runs["trial"]}
    assert status == {"0.001": "FINISHED", "1e+30": "FAILED"}
    failed = [r for r in runs["trial"] if r.info.status == "FAILED"][0]
    assert "diverged" in failed.data.tags["failure_reason"] or "NaN" in failed.data.tags["failure_reason"]
    assert result["trials_failed"] == 1 and result["trials_completed"] == 1
    assert runs["study"][0].info.status == "FINISHED"
    assert "beats_best_baseline" not in runs["study"][0].data.tags


@pytest.mark.parametrize("params, message", [
    ({"model.no_such": {"type": "choice", "values": [1]}}, "unknown config key 'model.no_such'"),
    ({"model": {"type": "choice", "values": [1]}}, "is a group of settings, not a value"),
    ({"model.dropout": {"type": "float", "min": 0.5, "max": 0.1}}, "range [0.5, 0.1] is empty"),
    ({"model.width": {"type": "choice", "values": []}}, "non-empty 'values'"),
    ({"model.width": {"type": "choice", "values": ["wide"]}}, "takes int values"),
    ({"model.dropout": {"type": "float", "min": "a", "max": 1}}, "range must be numbers"),
    ({"model.depth": {"type": "float", "min": 1, "max": 3}}, "takes int values"),
    ({"model.depth": {"type": "gaussian"}}, "type 'gaussian'"),
    ({"model.depth": {"type": "int", "min": 1, "max": 3, "when": {"loss.name": ["bce"]}}}, "must come earlier"),
    ({"model.depth": {"type": "int", "min": 1, "max": 3, "step": 1, "foo": 2}}, "unknown field"),
    ({"optimizer.learning_rate": {"type": "float", "min": 0.0, "max": 1.0, "sampling": "log"}}, "log sampling needs min > 0"),
    ({}, "search space is empty"),
])
def test_space_errors_before_any_trial(study_cfg, store, params, message):
    cfg = study_cfg()
    cfg.search.params = params
    with pytest.raises(ConfigError) as err:
        tune(cfg)
    assert message in str(err.value)
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    assert client.get_experiment_by_name("digits") is None  # nothing ran


def test_a_list_given_to_a_searched_key_is_named_before_any_trial(study_cfg, store):
    with pytest.raises(ConfigError) as err:
        tune(study_cfg("model.width=[64,128]"))
    assert str(err.value) == ("search space: model.width is given a list, not a single value; the study tries the "
                              "space's values for it, so give model.width one value (or none)")
    assert MlflowClient(f"sqlite:///{store}/mlflow.db").get_experiment_by_name("digits") is None


def test_default_spaces_parse(study_cfg):
    for name in ("default", "wide", "question"):
        # The question's space switches to a contrastive loss: it needs the question's margin.
        cfg = study_cfg(f"search={name}", *(["experiment=question"] if name == "question" else []))
        params = parse_space(cfg.search.params, cfg)
        assert {p.key for p in params} >= {"model.distance", "loss.name", "model.dropout"}


@pytest.mark.slow
def test_report_lists_trials_and_baselines(study_cfg, make_cfg, store, capsys):
    from siamese.report import report

    tune(study_cfg("tuner.max_trials=2"))
    capsys.readouterr()
    out = report(make_cfg("report.by=[loss,model.distance]", config="report", small=False))
    text = capsys.readouterr().out
    board = out["leaderboard"]
    assert list(board["run"]).count("baseline-cosine") == 1 and (board["#"] != "-").sum() == 2
    assert max(len(line) for line in text.splitlines() if "://" not in line) <= 100  # a URL is not cut
    parent = next(r for r in study_runs(store)[1]["study"])
    assert f"parent run {parent.info.run_id}: http://127.0.0.1:5000/#/experiments/" in text
    assert "val_auc by loss" in text and sum(out["by"]["loss"]["count"]) == 2
    from siamese.errors import UserError

    with pytest.raises(UserError, match="did you mean 'model.distance'"):  # before any line is printed
        report(make_cfg("report.by=[model.distnce]", config="report", small=False))
    assert capsys.readouterr().out == ""


def test_trial_config_accepts_numpy_scalars(make_cfg):
    """The bayesian oracle proposes numpy floats after its random start; OmegaConf rejects those."""
    import numpy as np

    from siamese.search import trial_config

    cfg = trial_config(make_cfg(config="tune"), {"loss.margin": np.float64(0.75), "model.depth": np.int64(2)})
    assert cfg.loss.margin == 0.75 and type(cfg.loss.margin) is float
    assert cfg.model.depth == 2 and type(cfg.model.depth) is int


@pytest.mark.slow
def test_trials_get_the_data_their_config_asks_for(study_cfg, store, tmp_path):
    """``data.preprocess`` is in the default space: each trial's model must carry its own choice."""
    import json as js

    tune(study_cfg("tuner.max_trials=4", "log_trial_models=true", "seed=3"))
    client, runs = study_runs(store)
    kinds = {}
    for run in runs["trial"]:
        local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model/bundle.json",
                                                    dst_path=str(tmp_path / run.info.run_id),
                                                    tracking_uri=f"sqlite:///{store}/mlflow.db")
        kind = js.loads(Path(local).read_text())["preprocessing"]["kind"]
        assert kind == run.data.params["data.preprocess"]
        kinds[kind] = kinds.get(kind, 0) + 1
    assert set(kinds) == {"none", "standardize"}, kinds


def test_stepped_float_reaches_its_endpoint_and_rounds():
    import keras_tuner as kt

    from siamese.search import Param, declare

    seen = set()
    for seed in range(60):
        hp = kt.HyperParameters()
        p = Param("model.dropout", "model.dropout", {"type": "float", "min": 0.0, "max": 0.5, "step": 0.1})
        declare(hp, [p])
        hp.values["model.dropout"] = hp.space[0].random_sample(seed=seed)
        seen.add(declare(hp, [p])["model.dropout"])
    assert seen == {0.0, 0.1, 0.2, 0.3, 0.4, 0.5}


@pytest.mark.slow
def test_several_executions_per_trial_each_get_a_run_with_figures(study_cfg, store):
    tune(study_cfg("tuner.max_trials=1", "tuner.executions_per_trial=2", "baselines=false"))
    client, runs = study_runs(store)
    (trial,) = runs["trial"]
    execs = runs["execution"]
    assert len(execs) == 2 and trial.info.status == "FINISHED"
    for ex in execs:
        assert ex.info.status == "FINISHED" and ex.data.tags["mlflow.parentRunId"] == trial.info.run_id
        assert len(client.list_artifacts(ex.info.run_id, "plots")) == 3
    assert trial.data.metrics["val_auc"] == pytest.approx(np.mean([ex.data.metrics["val_auc"] for ex in execs]))


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband", "grid"])
def test_the_oracle_draws_depend_on_the_seed_only_seed_0_included(make_cfg, tuner):
    """keras-tuner reads an oracle seed of 0 as "no seed" and draws one from Python's global random
    state: a seed=0 study drew other trials each run. Two oracles made under different global random
    states must draw the same trial values, for seed 0 as for any other; two seeds must differ."""
    import random

    import keras_tuner as kt

    from siamese.study import make_oracle

    def draws(seed: int, global_state: int) -> list[dict]:
        random.seed(global_state)  # what a fresh process (or earlier code in this one) leaves there
        oracle = make_oracle(make_cfg(f"tuner={tuner}", f"seed={seed}", "tuner.max_trials=4", config="tune"))
        hps = kt.HyperParameters()
        hps.Choice("width", [32, 64, 128, 256])
        hps.Float("rate", 1e-4, 1e-2, sampling="log")
        oracle.update_space(hps)
        return [oracle.populate_space(f"t{i}")["values"] for i in range(3)]

    assert draws(0, 1) == draws(0, 2)
    assert draws(7, 1) == draws(7, 2)
    if tuner not in ("grid", "hyperband"):  # grid walks the grid in order; hyperband's first bracket too
        assert draws(0, 1) != draws(7, 1)


@pytest.mark.slow
def test_a_seed_0_study_run_twice_in_fresh_processes_draws_the_same_trials(tmp_path, digits_cache):
    """The user-level claim: ``python -m siamese.tune seed=0`` twice gives the same trials (it did not)."""
    import json
    import os
    import subprocess
    import sys

    from conftest import SMALL, tracking_overrides
    from siamese.paths import project_root

    values = []
    for n in (1, 2):
        args = [*tracking_overrides(tmp_path / f"store{n}"), f"++data.cache_dir={digits_cache}", *SMALL, "seed=0",
                "tuner.max_trials=3", "training.epochs=1", "confirm.top_k=0", "baselines=false", "study=s0",
                f"study_dir={tmp_path}/study{n}"]
        proc = subprocess.run([sys.executable, "-m", "siamese.tune", *args], cwd=project_root(), capture_output=True,
                              text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        trials = sorted((tmp_path / f"study{n}" / "tuner").glob("trial_*/trial.json"))
        values.append([json.loads(t.read_text())["hyperparameters"]["values"] for t in trials])
    assert len(values[0]) == 3 and values[0] == values[1]
