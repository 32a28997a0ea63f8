"""Per-run figures drawn by the background worker: a run ends FINISHED with its metrics, tagged
``figures_missing`` until its figures are logged; failures are recorded, nothing finished is undone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from siamese.errors import ConfigError
from siamese.figures import ERROR_TAG, MISSING_TAG, FigureJob, Figures, mode_of
from siamese.tune import tune

PLOTS = {"plots/learning_curves.png", "plots/roc.png", "plots/score_histogram.png"}


def _client(store: Path) -> tuple[MlflowClient, str]:
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    exp = client.create_experiment("figures", artifact_location=(store / "artifacts").as_uri())
    return client, exp


def _job(client: MlflowClient, exp: str, scores: np.ndarray) -> FigureJob:
    run_id = client.create_run(exp).info.run_id
    y = (np.arange(len(scores)) % 2).astype(np.float32)
    return FigureJob(run_id, {"loss": [0.9, 0.5], "val_loss": [0.8, 0.6], "acc": [0.6, 0.7], "val_acc": [0.5, 0.6]}, {"val": (y, scores)}, 0.5)


def _hand_over(figures: Figures, job: FigureJob) -> None:
    """What Tracker.run does when a run's block completes: end it FINISHED, then hand it over."""
    figures.add(job)
    assert figures.takes_over(job.run_id)
    assert figures.client.get_run(job.run_id).data.tags[MISSING_TAG] == "true"
    figures.client.set_terminated(job.run_id, "FINISHED")
    figures.hand_over(job.run_id)


def _plots(client: MlflowClient, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, "plots")}


def test_worker_logs_figures_and_records_a_run_it_cannot_draw(store):
    client, exp = _client(store)
    good = _job(client, exp, np.linspace(0, 1, 40, dtype=np.float32))
    bad = _job(client, exp, np.full(40, np.nan, dtype=np.float32))  # no histogram of NaN scores
    with Figures("background", client.tracking_uri) as figures:
        _hand_over(figures, bad)
        _hand_over(figures, good)
        lost = figures.close()
    run = client.get_run(good.run_id)
    assert run.info.status == "FINISHED" and MISSING_TAG not in run.data.tags and _plots(client, good.run_id) == PLOTS
    failed = client.get_run(bad.run_id)  # its metrics are complete: still FINISHED, the failure recorded
    assert failed.info.status == "FINISHED" and failed.data.tags[MISSING_TAG] == "true"
    assert failed.data.tags[ERROR_TAG].startswith("figures: ValueError")
    assert lost == [f"{bad.run_id}: {failed.data.tags[ERROR_TAG]}"]


def test_figures_a_dead_worker_left_are_drawn_here_and_a_stop_keeps_finished_runs(store, tmp_path, capsys):
    client, exp = _client(store)
    first, second = (_job(client, exp, np.linspace(0, 1, 40, dtype=np.float32)) for _ in range(2))
    figures = Figures("background", client.tracking_uri)
    _hand_over(figures, first)
    figures.proc.kill()
    figures.proc.wait()
    _hand_over(figures, second)  # the pipe is broken: nothing raised here
    assert figures.close() == []
    assert "figure worker exited (code -9)" in capsys.readouterr().err
    for job in (first, second):
        run = client.get_run(job.run_id)
        assert run.info.status == "FINISHED" and MISSING_TAG not in run.data.tags and _plots(client, job.run_id) == PLOTS

    stopped, keep = _job(client, exp, np.linspace(0, 1, 40, dtype=np.float32)), tmp_path / "pending"
    with pytest.raises(KeyboardInterrupt), Figures("background", client.tracking_uri, keep_dir=keep) as figures:
        _hand_over(figures, stopped)  # the worker is still importing matplotlib and MLflow
        raise KeyboardInterrupt
    run = client.get_run(stopped.run_id)
    assert run.info.status == "FINISHED" and MISSING_TAG not in run.data.tags and _plots(client, stopped.run_id) == PLOTS
    assert list(keep.iterdir()) == []  # nothing left to redraw


def test_jobs_a_killed_study_left_on_disk_are_redrawn(store, tmp_path):
    client, exp = _client(store)
    keep = tmp_path / "pending"
    done, dead = (_job(client, exp, np.linspace(0, 1, 40, dtype=np.float32)) for _ in range(2))
    killed = Figures("background", client.tracking_uri, keep_dir=keep)
    killed.add(done)
    client.set_terminated(done.run_id, "FINISHED")  # ended; the process died before the hand-over
    killed.add(dead)  # its run never ended (it is KILLED on resume): its figures are not drawn
    client.set_terminated(dead.run_id, "KILLED")
    assert sorted(p.name for p in keep.iterdir()) == sorted(f"{j.run_id}.pkl" for j in (done, dead))
    with Figures("background", client.tracking_uri, keep_dir=keep) as resumed:
        assert resumed.redraw() == 1
        assert resumed.close() == []
    run = client.get_run(done.run_id)
    assert run.info.status == "FINISHED" and MISSING_TAG not in run.data.tags and _plots(client, done.run_id) == PLOTS
    assert _plots(client, dead.run_id) == set() and list(keep.iterdir()) == []


def test_inline_and_off_draw_now_or_never(store):
    client, exp = _client(store)
    now, never = (_job(client, exp, np.linspace(0, 1, 40, dtype=np.float32)) for _ in range(2))
    Figures("inline", client.tracking_uri).add(now)
    off = Figures(False, client.tracking_uri)
    off.add(never)
    assert len(client.list_artifacts(now.run_id, "plots")) == 3 and not off.takes_over(never.run_id)
    assert client.list_artifacts(never.run_id) == []


def test_unknown_figure_mode_fails_before_any_run(make_cfg, store, tmp_path):
    assert mode_of(False) == "off" and mode_of("inline") == "inline"
    with pytest.raises(ConfigError, match="trial_figures='sometimes'"):
        tune(make_cfg(f"study_dir={tmp_path}/s", "trial_figures=sometimes", config="tune"))
    assert MlflowClient(f"sqlite:///{store}/mlflow.db").get_experiment_by_name("digits") is None


def test_study_figures_read_like_the_runs():
    """Trial numbers and epochs as MLflow counts them; numbers on numeric axes, short labels."""
    import pandas as pd

    from siamese.plots import learning_curves
    from siamese.report import study_figures

    frame = pd.DataFrame({
        "tags.kind": ["trial"] * 4 + ["baseline"], "tags.trial_id": ["2", "0", "3", "1", None],
        "start_time": pd.to_datetime([3, 1, 4, 2, 0], unit="s"), "metrics.val_auc": [0.7, 0.9, 0.8, 0.6, 0.95],
        "params.model.width": ["128", "256", "64", "128", None],
        "params.optimizer.learning_rate": ["0.0009731527832051676", "0.01", "0.0001", "0.003", None],
        "params.model.distance": ["cosine", "l1", "learned_difference_head", "l1", None],
        "params.C": [None, None, None, None, "0.01"]})
    figs = study_figures(frame, "val_auc")
    by_trial = figs["plots/objective_by_trial.png"].axes[0]
    assert list(by_trial.lines[0].get_xdata()) == [0, 1, 2, 3]  # trial-00 is 0
    assert list(by_trial.lines[0].get_ydata()) == [0.9, 0.6, 0.7, 0.8]
    assert list(by_trial.lines[1].get_ydata()) == [0.9, 0.9, 0.9, 0.9]  # best so far
    panels = {ax.get_title(): ax for ax in figs["plots/objective_vs_params.png"].axes if ax.get_title()}
    assert sorted(panels) == ["model.distance", "model.width", "optimizer.learning_rate"]  # no baseline's C
    assert sorted(panels["model.width"].lines[0].get_xdata()) == [64, 128, 128, 256]  # a numeric axis
    assert panels["optimizer.learning_rate"].get_xscale() == "log"
    labels = [t.get_text() for t in panels["model.distance"].get_xticklabels()]
    assert labels == ["cosine", "l1", "learned_d…"]
    curves = learning_curves({"loss": [0.9, 0.5, 0.4], "val_loss": [0.8, 0.6, 0.5]})
    assert list(curves.axes[0].lines[0].get_xdata()) == [0, 1, 2]  # MLflow's steps start at 0
