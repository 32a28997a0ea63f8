"""A hyperparameter study: a YAML space searched by keras-tuner, every trial a nested MLflow run.

    python -m siamese.tune [data=… search=… tuner=… tuner.max_trials=… study=…]

Running the same study again resumes it: keras-tuner's project under ``experiments/<study>/``
skips finished trials, and the MLflow parent run is reopened, not duplicated.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import keras_tuner as kt
import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from sklearn.exceptions import ConvergenceWarning

from siamese import baselines, plots, tracking
from siamese.bundle import ModelBundle
from siamese.data import Dataset, load_dataset
from siamese.errors import ConfigError
from siamese.figures import Figures, mode_of
from siamese.model import output_kind
from siamese.paths import resolve
from siamese.search import Param, declare, parse_space, short, trial_config
from siamese.train import assess, fit, record, start

STATE_FILE = "study.json"
# The bayesian oracle's Gaussian process warns about length scales at its bounds on most fits;
# it is not actionable by a user and buries the progress lines.
warnings.filterwarnings("ignore", category=ConvergenceWarning)


class _SpaceModel(kt.HyperModel):
    """Declares the space so keras-tuner knows every parameter (and condition) before trial 1."""

    def __init__(self, params: list[Param]) -> None:
        super().__init__()
        self.params = params

    def build(self, hp: kt.HyperParameters) -> None:
        declare(hp, self.params)


class StudyTuner(kt.Tuner):
    """keras-tuner's Tuner with our trial: train from a trial config and log it to MLflow."""

    def __init__(self, study: "Study", **kwargs: Any) -> None:
        self.study = study
        super().__init__(hypermodel=_SpaceModel(study.params), **kwargs)

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict[str, float]:
        return self.study.run_trial(trial)

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        super().on_trial_end(trial)
        self.study.progress(trial, self.oracle)


class Study:
    """State of one study run: config, space, data, MLflow parent, progress and best model."""

    def __init__(self, cfg: DictConfig, data: Dataset, params: list[Param], parent_id: str, figures: Figures) -> None:
        self.cfg, self.params, self.parent_id, self.figures = cfg, params, parent_id, figures
        self.objective = str(cfg.search.objective)
        self.sign = 1.0 if cfg.search.direction == "max" else -1.0
        self.dir = resolve(cfg.study_dir)
        self.started = time.perf_counter()
        self.done_here = 0
        self.best = self._saved_best()
        self.last: dict[str, Any] = {}
        self._datasets = {self._data_key(cfg): data}

    @staticmethod
    def _data_key(cfg: DictConfig) -> str:
        return json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True)

    def data_for(self, cfg: DictConfig) -> Dataset:
        """The data a trial's config describes: a trial may vary ``data.*`` keys (e.g. preprocess).

        The validation split stays the study's (its seed), so every trial is judged on the same pairs.
        """
        key = self._data_key(cfg)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(cfg.data, int(self.cfg.seed))
        return self._datasets[key]

    # -- best model kept on disk, so a resumed study still has it -------------------------------
    def _saved_best(self) -> dict[str, Any] | None:
        path = self.dir / "best_model" / "trial.json"
        return json.loads(path.read_text()) if path.exists() else None

    def _keep_if_best(self, trial_id: str, bundle: ModelBundle, value: float) -> None:
        if self.best is None or self.sign * value > self.sign * self.best["objective"]:
            bundle.save(self.dir / "best_model")
            self.best = {"trial_id": trial_id, "objective": value}
            (self.dir / "best_model" / "trial.json").write_text(json.dumps(self.best))

    # -- one trial -------------------------------------------------------------------------------
    def trial_values(self, trial: kt.engine.trial.Trial) -> tuple[dict[str, Any], DictConfig]:
        """The trial's active values by config key and the full trial config."""
        values = declare(trial.hyperparameters, self.params)
        cfg = trial_config(self.cfg, values)
        hv = trial.hyperparameters.values
        if "tuner/epochs" in hv:  # Hyperband's budget; each trial trains from scratch
            cfg.training.epochs = int(hv["tuner/epochs"])
            cfg.training.early_stopping.patience = None
        cfg.training.verbose = 1 if self.cfg.tuner.verbose else 0
        return values, cfg

    def run_trial(self, trial: kt.engine.trial.Trial) -> dict[str, float]:
        self.last = {"values": {}, "t0": time.perf_counter()}
        tags = {"kind": "trial", "study": str(self.cfg.study), "trial_id": trial.trial_id}
        try:
            with tracking.run(self.cfg.tracking.experiment, self.cfg.tracking.artifact_root,
                              f"trial-{trial.trial_id}", nested=True, tags=tags, figures=self.figures):
                values, cfg = self.trial_values(trial)
                self.last["values"] = values
                mlflow.log_params({"trial_id": trial.trial_id, **{k: str(v) for k, v in values.items()}})
                mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
                output_kind(cfg.model, cfg.loss.name)
                results = [self._execute(cfg, trial.trial_id, i) for i in range(int(self.cfg.tuner.executions_per_trial))]
                metrics = {k: float(np.mean([r[1][k] for r in results])) for k in results[0][1]}
                if len(results) > 1:
                    mlflow.log_metrics(metrics)
                value = metrics[self.objective]
                if not math.isfinite(value):
                    raise RuntimeError(f"objective {self.objective} is {value}")
                self._keep_if_best(trial.trial_id, max(results, key=lambda r: self.sign * r[1][self.objective])[0], value)
                # The trial's time on the study's path: figures drawn in the background are not in it.
                mlflow.log_metric("trial_seconds", time.perf_counter() - self.last["t0"])
        except Exception as exc:  # recorded FAILED by tracking.run; keras-tuner moves on
            self.last["error"] = f"{type(exc).__name__}: {exc}"
            raise kt.errors.FailedTrialError(self.last["error"]) from exc
        self.last["value"] = value
        return metrics

    def _execute(self, cfg: DictConfig, trial_id: str, execution: int) -> tuple[ModelBundle, dict[str, float]]:
        """Fit and assess on validation, in the trial run (or a nested run per execution)."""
        cfg = trial_config(cfg, {"seed": int(cfg.seed) + execution})
        several = int(self.cfg.tuner.executions_per_trial) > 1
        ctx = (tracking.run(self.cfg.tracking.experiment, self.cfg.tracking.artifact_root,
                            f"trial-{trial_id}-exec{execution}", nested=True, tags={"kind": "execution"},
                            figures=self.figures)
               if several else contextlib.nullcontext())
        with ctx:
            data = self.data_for(cfg)
            model, kind, history = fit(cfg, data, [tracking.EpochLogger()])
            bundle, metrics, split_scores = assess(model, kind, data, with_test=False)
            record(bundle, metrics, history, split_scores, log_model=bool(self.cfg.log_trial_models),
                   figures=self.figures)
        return bundle, metrics

    def progress(self, trial: kt.engine.trial.Trial, oracle: kt.Oracle) -> None:
        """One line per trial: n/N, params in short, objective, elapsed, time left."""
        self.done_here += 1
        n_done = len([t for t in oracle.trials.values() if t.status in ("COMPLETED", "FAILED", "INVALID")])
        total = int(self.cfg.tuner.max_trials)
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done_here * max(total - n_done, 0)
        took = time.perf_counter() - self.last.get("t0", time.perf_counter())
        result = f"{self.objective}={self.last['value']:.4f}" if "value" in self.last else f"FAILED ({self.last.get('error', trial.status)[:60]})"
        best = f"best={self.best['objective']:.4f}" if self.best else "best=-"
        print(f"[{n_done}/{total}] trial {trial.trial_id} {short(self.last.get('values', {}))} | {result} {best} "
              f"| {took:.0f}s, elapsed {elapsed / 60:.1f}m, ~{left / 60:.1f}m left", flush=True)


def _oracle(cfg: DictConfig) -> kt.Oracle:
    objective = kt.Objective(str(cfg.search.objective), str(cfg.search.direction))
    oracle = hydra.utils.instantiate(cfg.tuner.oracle, objective=objective,
                                     max_consecutive_failed_trials=int(cfg.tuner.max_consecutive_failures))
    # Hyperband sizes itself from max_epochs; cap it like the others so max_trials means the same.
    oracle.max_trials = int(cfg.tuner.max_trials)
    return oracle


def _parent(cfg: DictConfig, space_hash: str, data: Dataset) -> tuple[str, bool]:
    """Reuse the study's MLflow parent run if this study ran before in this store, else create it."""
    state_path = resolve(cfg.study_dir) / STATE_FILE
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if state.get("space_hash") != space_hash:
            raise ConfigError(f"study '{cfg.study}' exists with a different search space; pick another study= "
                              f"or delete {state_path.parent}")
        try:
            mlflow.get_run(state["parent_run_id"])
            return state["parent_run_id"], True
        except mlflow.exceptions.MlflowException:
            pass  # a fresh store: start a new parent
    exp_id = tracking.experiment_id(cfg.tracking.experiment, cfg.tracking.artifact_root)
    tags = {**tracking.reproducibility_tags(int(cfg.seed), data.hashes, data.files), "kind": "study",
            "study": str(cfg.study), "tuner": str(cfg.tuner.name), "objective": str(cfg.search.objective),
            "direction": str(cfg.search.direction), "space_hash": space_hash}
    run = mlflow.MlflowClient().create_run(exp_id, run_name=str(cfg.study), tags=tags)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps({"parent_run_id": run.info.run_id, "space_hash": space_hash,
                                      "tracking_uri": mlflow.get_tracking_uri()}))
    return run.info.run_id, False


def run_baselines(cfg: DictConfig, data: Dataset, done: set[str]) -> dict[str, dict[str, float]]:
    """Each baseline as its own nested run, unless this study already has it."""
    out = {}
    for name, make in baselines.BASELINES.items():
        if name in done:
            continue
        with tracking.run(cfg.tracking.experiment, cfg.tracking.artifact_root, f"baseline-{name}", nested=True,
                          tags={"kind": "baseline", "baseline": name, "study": str(cfg.study)}):
            metrics = baselines.score_baseline(make(data), data)
            mlflow.log_metrics(metrics)
            out[name] = metrics
    return out


def leaderboard(frame: pd.DataFrame, objective: str, direction: str) -> pd.DataFrame:
    """Trials and baselines ranked by the objective on validation."""
    if frame.empty:
        return frame
    cols = {"run_id": "run_id", "tags.mlflow.runName": "name", "tags.kind": "kind", "status": "status"}
    keep = frame[[c for c in cols if c in frame.columns]].rename(columns=cols)
    for m in ("val_auc", "val_accuracy", "val_f1", "val_ap", objective):
        if f"metrics.{m}" in frame.columns:
            keep[m] = frame[f"metrics.{m}"]
    params = [c for c in frame.columns if c.startswith("params.") and c != "params.trial_id"]
    for c in params:
        keep[c[len("params."):]] = frame[c]
    return keep.sort_values(objective, ascending=direction != "max", na_position="last").reset_index(drop=True)


def _plots(frame: pd.DataFrame, objective: str) -> None:
    trials = frame[frame["tags.kind"] == "trial"].sort_values("start_time")
    if f"metrics.{objective}" not in trials.columns:
        return
    tracking.log_figure(plots.objective_by_trial(trials[f"metrics.{objective}"].to_numpy(dtype=float), objective), "plots/objective_by_trial.png")
    params = {c[len("params."):]: trials[c] for c in trials.columns if c.startswith("params.") and c != "params.trial_id"}
    tracking.log_figure(plots.objective_vs_params(params, trials[f"metrics.{objective}"].to_numpy(dtype=float), objective), "plots/objective_vs_params.png")


def finish(study: Study, tuner: StudyTuner, cfg: DictConfig, lost_figures: list[str]) -> dict[str, float]:
    """Best trial → test metrics once, leaderboard, plots, baseline comparison, on the parent run.

    ``lost_figures`` names trial runs whose background figures failed (those runs are FAILED).
    """
    trials = list(tuner.oracle.trials.values())
    failed = [t for t in trials if t.status in ("FAILED", "INVALID")]
    completed = [t for t in trials if t.status == "COMPLETED"]
    mlflow.log_metrics({"trials_completed": len(completed), "trials_failed": len(failed),
                        "trial_figures_failed": len(lost_figures)})
    if not completed:
        reasons = "; ".join((t.message or "").strip().splitlines()[-1][:200] for t in failed[:3])
        raise RuntimeError(f"every trial of study '{cfg.study}' failed ({len(failed)}): {reasons}")
    best_trial = tuner.oracle.get_best_trials(1)[0]
    values, best_cfg = study.trial_values(best_trial)
    data = study.data_for(best_cfg)
    if study.best is not None and study.best["trial_id"] == best_trial.trial_id:
        bundle = ModelBundle.load(study.dir / "best_model")
        source = "restored"
    else:  # the kept model is missing (e.g. deleted): retrain the best trial's config
        model, kind, _ = fit(best_cfg, data)
        bundle = assess(model, kind, data, with_test=False)[0]
        source = "retrained"
    # Thresholds stay the ones chosen on validation; test is scored once, here.
    _, metrics, split_scores = assess(bundle.model, bundle.kind, data, with_test=True)
    frame = tracking.children(study.parent_id)
    run_ids = frame[(frame["tags.kind"] == "trial") & (frame["tags.trial_id"] == best_trial.trial_id)]["run_id"]
    base = frame[frame["tags.kind"] == "baseline"]
    obj = study.objective
    best_base = base[f"metrics.{obj}"].max() if study.sign > 0 else base[f"metrics.{obj}"].min()
    margin = study.sign * (metrics[obj] - best_base) if len(base) else float("nan")
    mlflow.log_metrics({**metrics, f"best_{obj}": metrics[obj], f"best_baseline_{obj}": best_base,
                        "margin_over_best_baseline": margin})
    mlflow.set_tags({"best_trial_id": best_trial.trial_id, "best_trial_run_id": run_ids.iloc[0] if len(run_ids) else "",
                     "best_model_source": source, "beats_best_baseline": str(bool(margin > 0)).lower(),
                     **{f"best.{k}": str(v) for k, v in values.items()}})
    mlflow.log_text(json.dumps({k: v for k, v in values.items()}, indent=1, default=str), "best_params.json")
    board = leaderboard(frame, obj, str(cfg.search.direction))
    with tracking.scratch_dir() as tmp:
        path = Path(tmp) / "leaderboard.csv"
        board.to_csv(path, index=False)
        mlflow.log_artifact(str(path))
    _plots(frame, obj)
    record(bundle, {}, {}, split_scores, log_model=True)
    print(f"study {cfg.study}: {len(completed)} trials completed, {len(failed)} failed; best trial {best_trial.trial_id} "
          f"{obj}={metrics[obj]:.4f} test_auc={metrics['test_auc']:.4f} test_accuracy={metrics['test_accuracy']:.4f}; "
          f"best baseline {obj}={best_base:.4f} ({'beaten' if margin > 0 else 'NOT beaten'} by {margin:+.4f})")
    if failed:
        print(f"warning: {len(failed)} trial(s) failed; their runs are FAILED with a failure_reason tag", flush=True)
    if lost_figures:
        print(f"warning: the figures of {len(lost_figures)} trial run(s) failed; those runs are FAILED: "
              f"{lost_figures[0]}", flush=True)
    return {**metrics, "trials_completed": float(len(completed)), "trials_failed": float(len(failed))}


def tune(cfg: DictConfig) -> dict[str, float]:
    """Run (or resume) the study ``cfg`` describes.

    Returns:
        The best trial's validation metrics and its test metrics, plus trial counts.

    Raises:
        ConfigError: a bad space or tuner setting, before any trial runs.
    """
    params = parse_space(cfg.search.params, cfg)
    if cfg.search.direction not in ("max", "min"):
        raise ConfigError(f"search.direction must be max or min, got {cfg.search.direction!r}")
    if int(cfg.tuner.max_trials) < 1:
        raise ConfigError(f"tuner.max_trials must be at least 1, got {cfg.tuner.max_trials}")
    figure_mode = mode_of(cfg.trial_figures)
    data = start(cfg)
    space_hash = tracking.space_hash(OmegaConf.to_container(cfg.search, resolve=True))
    parent_id, resumed = _parent(cfg, space_hash, data)
    with tracking.run(cfg.tracking.experiment, cfg.tracking.artifact_root, run_id=parent_id):
        if not resumed:
            tracking.log_config(cfg)
        else:
            mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config_resumed.yaml")
        done = set(tracking.children(parent_id).get("tags.baseline", pd.Series(dtype=str)).dropna())
        if cfg.baselines:
            run_baselines(cfg, data, done)
        with Figures(figure_mode) as figures:  # a failed search stops the worker, ends its runs KILLED
            study = Study(cfg, data, params, parent_id, figures)
            tuner = StudyTuner(study, oracle=_oracle(cfg), directory=str(study.dir), project_name="tuner", overwrite=False)
            previously = len([t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"])
            print(f"study {cfg.study}: {cfg.tuner.name} search of {len(params)} parameters, {cfg.tuner.max_trials} trials"
                  f"{f' (resuming: {previously} done)' if resumed else ''}; objective {cfg.search.objective} "
                  f"({cfg.search.direction}); MLflow parent run {parent_id}", flush=True)
            tuner.search(verbose=0)
            lost = figures.close()
        return finish(study, tuner, cfg, lost)


if __name__ == "__main__":
    from siamese.cli import entry

    entry(tune, "tune")()
