"""Per-run figures drawn by the background worker: runs end FINISHED only with their figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from siamese.errors import ConfigError
from siamese.figures import FigureJob, Figures, mode_of
from siamese.tune import tune


def _client(store: Path) -> tuple[MlflowClient, str]:
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    exp = client.create_experiment("figures", artifact_location=(store / "artifacts").as_uri())
    return client, exp


def _job(client: MlflowClient, exp: str, scores: np.ndarray) -> FigureJob:
    run_id = client.create_run(exp).info.run_id
    y = (np.arange(len(scores)) % 2).astype(np.float32)
    return FigureJob(run_id, {"loss": [0.9, 0.5], "val_loss": [0.8, 0.6], "acc": [0.6, 0.7], "val_acc": [0.5, 0.6]}, {"val": (y, scores)}, 0.5)


def _hand_over(figures: Figures, job: FigureJob) -> None:
    figures.add(job)
    assert figures.takes_over(job.run_id)
    figures.hand_over(job.run_id)


def test_worker_logs_figures_then_finishes_and_fails_a_run_it_cannot_draw(store):
    client, exp = _client(store)
    good = _job(client, exp, np.linspace(0, 1, 40, dtype=np.float32))
    bad = _job(client, exp, np.full(40, np.nan, dtype=np.float32))  # no histogram of NaN scores
    with Figures("background", client.tracking_uri) as figures:
        _hand_over(figures, bad)
        _hand_over(figures, good)
        assert client.get_run(good.run_id).info.status == "RUNNING"  # until the worker ends it
        lost = figures.close()
    assert client.get_run(good.run_id).info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(good.run_id, "plots")} == {
        "plots/learning_curves.png", "plots/roc.png", "plots/score_histogram.png"}
    failed = client.get_run(bad.run_id)
    assert failed.info.status == "FAILED" and failed.data.tags["failure_reason"].startswith("figures: ValueError")
    assert lost == [f"{bad.run_id}: {failed.data.tags['failure_reason']}"]


def test_runs_a_dead_worker_left_are_failed_and_a_stopped_study_kills_its_pending_runs(store):
    client, exp = _client(store)
    first, second = (_job(client, exp, np.linspace(0, 1, 40, dtype=np.float32)) for _ in range(2))
    figures = Figures("background", client.tracking_uri)
    _hand_over(figures, first)
    figures.proc.kill()
    figures.proc.wait()
    _hand_over(figures, second)  # the pipe is broken: nothing raised here
    lost = figures.close()
    run = client.get_run(second.run_id)
    assert run.info.status == "FAILED" and "figure worker exited (code -9)" in run.data.tags["failure_reason"]
    assert any(line.startswith(second.run_id) for line in lost)

    stopped = _job(client, exp, np.linspace(0, 1, 40, dtype=np.float32))
    with pytest.raises(KeyboardInterrupt), Figures("background", client.tracking_uri) as figures:
        _hand_over(figures, stopped)  # the worker is still importing matplotlib and MLflow
        raise KeyboardInterrupt
    run = client.get_run(stopped.run_id)
    assert run.info.status == "KILLED" and "study stopped" in run.data.tags["failure_reason"]


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
