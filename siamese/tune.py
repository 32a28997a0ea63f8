"""A hyperparameter study: a YAML space searched by keras-tuner, every trial a nested MLflow run.

    python -m siamese.tune [data=… search=… tuner=… tuner.max_trials=… study=…]

Running the same study again resumes it: keras-tuner's project under ``experiments/<study>/``
skips finished trials (a trial a stop or a dead process interrupted runs again, with its id), and
the MLflow parent run is reopened, not duplicated. The trial loop lives in :mod:`siamese.study`, the
study's state between runs (guard, lock, reconciliation) in :mod:`siamese.resume`, ranking and the
study figures in :mod:`siamese.report`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from sklearn.exceptions import ConvergenceWarning

from siamese import backend, baselines, launch, report, resume, runmeta, tracking
from siamese.data import Dataset
from siamese.errors import TrainingFailed
from siamese.figures import PENDING_FIGURES, Figures, mode_of

if TYPE_CHECKING:
    from siamese.study import Study, StudySettings, StudyTuner


# The bayesian oracle's Gaussian process warns about length scales at its bounds on most fits;
# it is not actionable by a user and buries the progress lines.
warnings.filterwarnings("ignore", category=ConvergenceWarning)


class BaselineFailed(RuntimeError):
    """A baseline could not score the data (NaN or infinite metrics, or its fit failed)."""


def run_baselines(tracker: tracking.Tracker, study: StudySettings, data: Dataset, done: set[str],
                  logistic: baselines.LogisticSettings) -> dict[str, dict[str, float]]:
    """Each baseline as its own nested run of the active parent, unless this study already has it.

    The logistic regression's ``C`` is chosen on validation by the study's objective (param ``C``).
    A baseline that cannot score (its fit fails, or a metric is NaN or infinite) ends FAILED with
    its reason and a warning; the study goes on without it.
    """
    out = {}
    for name, make in baselines.study_baselines(logistic, study.objective, study.direction).items():
        if name in done:
            continue
        try:
            with tracker.run(f"{study.name}/baseline-{name}", nested=True,
                             tags={"kind": "baseline", "baseline": name, "study": study.name}):
                try:  # overflow and NaN are judged below, not warned about line by line
                    with np.errstate(all="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        scorer, params = make(data)
                        metrics = {**baselines.score_baseline(scorer, data), **data.overlap}
                except (ValueError, ArithmeticError) as exc:  # sklearn on NaN/inf, or one class in a split
                    raise BaselineFailed(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
                bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
                if bad:
                    raise BaselineFailed(f"{', '.join(bad[:3])} {'is' if len(bad) == 1 else 'are'} NaN or infinite")
                mlflow.log_params({k: v for k, v in params.items() if k != "by_C"})
                if "by_C" in params:
                    mlflow.log_dict({str(c): v for c, v in params["by_C"].items()}, f"{study.objective}_by_C.json")
                mlflow.log_metrics(metrics)
                out[name] = metrics
        except BaselineFailed as exc:
            print(f"warning: baseline {name} cannot score this data ({exc}); its run is FAILED", flush=True)
            continue
        chosen = f" (C={params['C']:.3g}, chosen on validation)" if "C" in params else ""
        print(f"baseline {name}{chosen}: {study.objective}={metrics.get(study.objective, float('nan')):.4f} "
              f"test_accuracy={metrics['test_accuracy']:.4f}", flush=True)
    return out


def _common_reason(study: "Study", failed: list) -> str:
    """The most common failure reason of a study's failed trials, from their runs' ``failure_reason``."""
    frame = tracking.children(study.parent_id)
    reasons = []
    if "tags.failure_reason" in frame.columns:
        ids = {t.trial_id for t in failed}
        rows = frame[(frame["tags.kind"] == "trial") & frame["tags.trial_id"].isin(ids)]
        reasons = list(rows["tags.failure_reason"].dropna())
    if not reasons:  # runs not found: keras-tuner's own message, whose last line names the error
        reasons = [(t.message or "unknown").strip().splitlines()[-1] for t in failed]
    # "Diverged: training diverged: …" reads better without the class name its message repeats.
    reasons = [r.split(": ", 1)[1] if r.startswith(("Diverged: ", "FailedTrialError: ")) else r for r in reasons]
    reason, count = Counter(reasons).most_common(1)[0]
    return f"{reason[:300]}" + (f" ({count} of {len(failed)} trials)" if len(failed) > 1 else "")


def finish(study: "Study", tuner: "StudyTuner", lost_figures: list[str]) -> dict[str, float]:
    """Best trial → test metrics once, leaderboard, plots, baseline comparison, on the parent run.

    ``lost_figures`` names trial runs whose figures could not be drawn (FINISHED, tagged ``figures_error``).

    Raises:
        TrainingFailed: every trial failed (the message names the most common reason).
    """
    from siamese import confirm, engine  # Keras: imported once tune() chose the backend

    s = study.settings
    trials = list(tuner.oracle.trials.values())
    failed = [t for t in trials if t.status in ("FAILED", "INVALID")]
    completed = [t for t in trials if t.status == "COMPLETED"]
    mlflow.log_metrics({"trials_completed": len(completed), "trials_failed": len(failed),
                        "trial_figures_failed": len(lost_figures)})
    if not completed:
        raise TrainingFailed(f"every trial of study '{s.name}' failed; most common reason: {_common_reason(study, failed)}")
    best_trial = tuner.oracle.get_best_trials(1)[0]
    confirmed = confirm.confirm(study, tuner, confirm.ConfirmSettings.of(study.cfg))
    if confirmed is not None:  # the winner by mean over fresh seeds; its best seed's model is kept
        best_trial = confirmed.winner.trial
    values, best_cfg = study.trial_values(best_trial)
    data = study.data_for(best_cfg)
    bundle, source = (confirmed.bundle, "confirm") if confirmed else (study.kept_model(best_trial.trial_id), "restored")
    if bundle is None:  # the kept model is missing (e.g. deleted): retrain the best trial's config
        fitted = engine.fit(engine.RunSpec.of(best_cfg), data)
        source = "retrained"
    else:
        fitted = engine.Fitted(bundle.model, bundle.kind)
    # Thresholds stay the ones chosen on validation; test is scored once, here.
    result = engine.assess(fitted, data, with_test=True)
    frame = report.one_per_trial(tracking.children(study.parent_id))
    run_ids = frame[(frame["tags.kind"] == "trial") & (frame["tags.trial_id"] == best_trial.trial_id)
                    & (frame["status"] == "FINISHED")]["run_id"]
    base = frame[(frame["tags.kind"] == "baseline") & (frame["status"] == "FINISHED")]
    obj, metrics = s.objective, result.metrics
    best_base = base[f"metrics.{obj}"].max() if s.sign > 0 else base[f"metrics.{obj}"].min()
    # With confirmation the winner's value is its mean over fresh seeds: one seed's luck beats nothing.
    value = confirmed.winner.mean(obj) if confirmed else metrics[obj]
    margin = s.sign * (value - best_base) if len(base) else float("nan")
    mlflow.set_tags({"best_trial_id": best_trial.trial_id, "best_trial_run_id": run_ids.iloc[0] if len(run_ids) else "",
                     "best_model_source": source,
                     **({"beats_best_baseline": str(bool(margin > 0)).lower()} if len(base) else {}),
                     **(confirm.tags(confirmed) if confirmed else {}),
                     **{f"best.{k}": str(v) for k, v in values.items()}})
    runmeta.log_winner(values, best_trial.trial_id)
    mlflow.log_text(json.dumps(values, indent=1, default=str), "best_params.json")
    with tracking.scratch_dir() as tmp:
        path = Path(tmp) / "leaderboard.csv"
        board = report.leaderboard(frame[frame["tags.kind"] != "confirm"], obj, s.direction)
        (confirmed.annotate(board, frame) if confirmed else board).to_csv(path, index=False)
        mlflow.log_artifact(str(path))
    for name, fig in report.study_figures(frame, obj, s.direction).items():
        tracking.log_figure(fig, name)
    parent_metrics = {**metrics, f"best_{obj}": metrics[obj], f"best_baseline_{obj}": best_base,
                      "margin_over_best_baseline": margin, **(confirmed.metrics() if confirmed else {})}
    engine.record(engine.Assessment(result.bundle, parent_metrics, result.curves), {}, log_model=True)
    print(f"study {s.name}: {len(completed)} trials completed, {len(failed)} failed; best trial {best_trial.trial_id} "
          f"{obj}={metrics[obj]:.4f} test_auc={metrics['test_auc']:.4f} test_accuracy={metrics['test_accuracy']:.4f}; "
          + (f"best baseline {obj}={best_base:.4f} ({'beaten' if margin > 0 else 'NOT beaten'} by {margin:+.4f}"
             f"{', confirmed mean' if confirmed else ''})" if len(base) else "no finished baseline to compare with"))
    if failed:
        print(f"warning: {len(failed)} trial(s) failed; their runs are FAILED with a failure_reason tag", flush=True)
    if lost_figures:
        print(f"warning: the figures of {len(lost_figures)} run(s) could not be drawn (tagged figures_error): "
              f"{lost_figures[0]}", flush=True)
    return {**metrics, **(confirmed.metrics() if confirmed else {}), "trials_completed": float(len(completed)),
            "trials_failed": float(len(failed))}


def tune(cfg: DictConfig) -> dict[str, float]:
    """Run (or resume) the study ``cfg`` describes.

    Returns:
        The best trial's validation metrics and its test metrics, plus trial counts.

    Raises:
        ConfigError: a bad space or tuner setting, before any trial runs; a resumed study with
            other data, settings or space (unless ``resume=force``); the study running elsewhere.
    """
    from siamese.distributed import Distributed

    dist = Distributed.of(cfg)
    if dist.role == "worker":  # one worker of a cluster: trials from the chief, no finish here
        from siamese.worker import work

        return work(cfg, dist)
    backend.start_for(cfg)
    # keras-tuner and the engine import Keras: imported once the backend is chosen.
    from keras_tuner.src import config as kt_config

    from siamese import confirm, engine
    from siamese.search import parse_space
    from siamese.study import Study, StudySettings, StudyTuner, make_oracle

    # keras-tuner prints every failed trial's traceback to stderr (its config.DEBUG defaults to
    # True); the trial's run keeps the reason and the progress line says FAILED. SIAMESE_DEBUG=1
    # brings it back.
    kt_config.DEBUG = os.environ.get("SIAMESE_DEBUG", "") not in ("", "0")

    params = parse_space(cfg.search.params, cfg)
    settings = StudySettings.of(cfg)
    logistic = baselines.LogisticSettings.of(cfg.get("logistic"))
    confirm.ConfirmSettings.of(cfg)  # checked before any run; finish reads it again
    figure_mode = mode_of(cfg.trial_figures)
    _, tracker, data = engine.prepare(cfg)
    space_hash = tracking.space_hash(OmegaConf.to_container(cfg.search, resolve=True))
    # The oracle's address is bound before anything is opened: a taken one is one line, and no worker
    # started below can reach another process on it.
    with (launch.endpoint(dist.host, dist.port, dist.workers + 4) if dist.active else nullcontext()) as end, \
            resume.study_lock(settings.dir, settings.name):
        parent_id, resumed = resume.open_parent(cfg, settings, tracker, space_hash, data, {p.key for p in params})
        killed = resume.reconcile(parent_id) if resumed else []
        with tracker.run(run_id=parent_id):
            runmeta.announce(cfg.tracking, f"study {settings.name}: parent")
            if not resumed:
                runmeta.log_study_start(cfg, resume.fixed_settings(cfg, {p.key for p in params}))
                engine.log_data(data)
            else:
                mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config_resumed.yaml")
            mlflow.log_metrics(data.overlap)
            frame = tracking.children(parent_id)  # a baseline a stop interrupted runs again
            finished = frame[frame["status"] == "FINISHED"] if len(frame) else frame
            done = set(finished.get("tags.baseline", pd.Series(dtype=str)).dropna())
            # Local workers start now: their start-up overlaps the baselines and the tuner's set-up.
            with launch.local_workers(cfg, settings.dir, parent_id, dist, end.address if end else "") as workers:
                if cfg.baselines:
                    run_baselines(tracker, settings, data, done, logistic)
                # A stop ends the running trial KILLED; finished trials stay FINISHED, their pending
                # figures are drawn within a grace period or kept under the study's folder.
                with Figures(figure_mode, keep_dir=settings.dir / PENDING_FIGURES) as figures:
                    redrawn = figures.redraw()
                    study = Study(cfg, settings, params, data, tracker, parent_id, figures)
                    tuner = StudyTuner(study, oracle=make_oracle(cfg), directory=str(settings.dir), project_name="tuner",
                                       overwrite=False)
                    adopted = resume.adopt_finished(tuner.oracle, parent_id, settings.objective) if resumed else []
                    print(_headline(settings, tuner, len(params), parent_id, resumed), flush=True)
                    if adopted:
                        print(f"resume: trial(s) {', '.join(adopted)} had finished in MLflow before the process "
                              "died; recorded as completed, not run again", flush=True)
                    if killed:
                        print(f"resume: {len(killed)} run(s) a dead process left RUNNING are now KILLED; "
                              "an interrupted trial runs again with its id", flush=True)
                    if redrawn:
                        print(f"resume: drawing the missing figures of {redrawn} finished run(s)", flush=True)
                    lost_elsewhere: list[str] = []
                    try:
                        if dist.active:  # a keras-tuner chief: workers run the trials (siamese.distributed)
                            from siamese import distributed

                            lost_elsewhere = distributed.search(study, tuner, dist, end, workers)
                        else:
                            tuner.search(verbose=0)
                    except RuntimeError as exc:  # keras-tuner's max_consecutive_failures: finish says why
                        if not str(exc).startswith("Number of consecutive failures"):
                            raise
                        print(f"warning: the search stopped: {str(exc).splitlines()[0]}", flush=True)
                    lost = figures.close() + lost_elsewhere
            return finish(study, tuner, lost)


def _headline(settings: "StudySettings", tuner: "StudyTuner", n_params: int, parent_id: str, resumed: bool) -> str:
    """The study's first line; on a resume, how many trials are done and how many are left to run."""
    trials = list(tuner.oracle.trials.values())
    completed = sum(t.status == "COMPLETED" for t in trials)
    ended = sum(t.status in ("COMPLETED", "FAILED", "INVALID") for t in trials)
    left = max(settings.max_trials - ended, 0)
    state = f" (resuming: {completed} done, {left} to run)" if resumed else ""
    return (f"study {settings.name}: {settings.tuner} search of {n_params} parameters, {settings.max_trials} "
            f"trials{state}; objective {settings.objective} ({settings.direction}); MLflow parent run {parent_id}")


if __name__ == "__main__":
    from siamese.cli import entry

    entry(tune, "tune")()
