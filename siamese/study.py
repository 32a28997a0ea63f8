"""A study's state and its keras-tuner adapter: a YAML space searched trial by trial, each trial
an MLflow run nested under the study's parent run.

keras-tuner nouns: :class:`SpaceModel` is the ``HyperModel`` (it only declares the space: trials
are built from configs, not from ``hp``), :class:`StudyTuner` the ``Tuner`` whose ``run_trial``
hands a trial to :class:`Study`, and the oracle comes from ``conf/tuner/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hydra
import keras_tuner as kt
import keras_tuner.src.utils as kt_utils
import mlflow
import numpy as np
from omegaconf import DictConfig, OmegaConf

from siamese import engine, runmeta, stops, tracking
from siamese.bundle import ModelBundle
from siamese.data import Dataset, load_dataset
from siamese.errors import ConfigError
from siamese.figures import Figures
from siamese.paths import resolve
from siamese.report import short
from siamese.search import Param, declare, trial_config

BEST_DIR = "best_model"


def _save_json_whole(path: str, obj: Any) -> str:
    """keras-tuner's ``save_json``, but the file is replaced whole: a stop or SIGKILL while it writes
    ``oracle.json`` or a ``trial.json`` would leave it truncated and the study unable to resume."""
    text = json.dumps(obj)
    partial = f"{path}.partial"
    with open(partial, "w") as f:
        f.write(text)
    os.replace(partial, path)
    return text


kt_utils.save_json = _save_json_whole  # every keras-tuner state write (keras-tuner==1.4.8) goes through it


@dataclass(frozen=True)
class StudySettings:
    """The study-level settings a trial needs, read once from the study's config.

    Attributes:
        name: the study's name (``study``).
        dir: keras-tuner's project and the kept best model (``study_dir``).
        objective: the metric the search optimises, e.g. ``val_auc``; ``direction``: max or min.
        executions: fits per trial (``tuner.executions_per_trial``), seeds ``seed … seed+n-1``.
        max_trials: the tuner's budget.
        log_trial_models: log every trial's model, not just the best one.
        verbose: Keras' per-epoch output in trials.
        seed: the study's seed, which fixes the validation split every trial is judged on.
    """

    name: str
    dir: Path
    objective: str
    direction: str
    executions: int
    max_trials: int
    log_trial_models: bool
    verbose: bool
    seed: int
    tuner: str

    @classmethod
    def of(cls, cfg: DictConfig) -> "StudySettings":
        """Read and check a study config.

        Raises:
            ConfigError: a direction other than max/min, or budgets below 1.
        """
        if cfg.search.direction not in ("max", "min"):
            raise ConfigError(f"search.direction must be max or min, got {cfg.search.direction!r}")
        for key in ("max_trials", "executions_per_trial"):
            if int(cfg.tuner[key]) < 1:
                raise ConfigError(f"tuner.{key} must be at least 1, got {cfg.tuner[key]}")
        return cls(str(cfg.study), resolve(cfg.study_dir), str(cfg.search.objective), str(cfg.search.direction),
                   int(cfg.tuner.executions_per_trial), int(cfg.tuner.max_trials), bool(cfg.log_trial_models),
                   bool(cfg.tuner.verbose), int(cfg.seed), str(cfg.tuner.name))

    @property
    def sign(self) -> float:
        """+1 when higher objective values are better, −1 when lower are."""
        return 1.0 if self.direction == "max" else -1.0


@dataclass
class TrialOutcome:
    """What the progress line says of the trial that just ended."""

    values: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    value: float | None = None
    error: str | None = None


class SpaceModel(kt.HyperModel):
    """Declares the space so keras-tuner knows every parameter (and condition) before trial 1."""

    def __init__(self, params: list[Param]) -> None:
        super().__init__()
        self.params = params

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        declare(hp, self.params)

    def build(self, hp: kt.HyperParameters) -> None:
        """keras-tuner calls ``build`` to explore conditional scopes; trials build their models
        from configs (:mod:`siamese.engine`), so this only declares."""
        self.declare_hyperparameters(hp)


class StudyTuner(kt.Tuner):
    """keras-tuner's Tuner with our trial: train from a trial config and log it to MLflow."""

    def __init__(self, study: "Study", **kwargs: Any) -> None:
        self.study = study
        super().__init__(hypermodel=SpaceModel(study.params), **kwargs)

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict[str, float]:
        stops.check()  # a stop swallowed since the last trial: no new trial starts
        return self.study.run_trial(trial)

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        super().on_trial_end(trial)
        self.study.progress(trial, self.oracle)
        stops.check()


# keras-tuner reads an oracle seed of 0 as "no seed" (``seed or random.randint(1, 10000)``, in
# keras_tuner/src/engine/oracle.py): a seed=0 study drew other trials each time it ran. Seed 0 is given to
# the oracle as this fixed stand-in (the largest seed NumPy takes: Bayesian optimisation seeds NumPy with it).
ORACLE_SEED_FOR_ZERO = 2**32 - 1


def make_oracle(cfg: DictConfig) -> kt.Oracle:
    """The oracle ``conf/tuner/`` names, with the study's objective and budget; its draws depend on
    ``tuner.oracle.seed`` only (seed 0 included: :data:`ORACLE_SEED_FOR_ZERO`)."""
    objective = kt.Objective(str(cfg.search.objective), str(cfg.search.direction))
    seeded = {"seed": ORACLE_SEED_FOR_ZERO} if OmegaConf.select(cfg, "tuner.oracle.seed") == 0 else {}
    oracle = hydra.utils.instantiate(cfg.tuner.oracle, objective=objective,
                                     max_consecutive_failed_trials=int(cfg.tuner.max_consecutive_failures), **seeded)
    # Hyperband sizes itself from max_epochs; cap it like the others so max_trials means the same.
    oracle.max_trials = int(cfg.tuner.max_trials)
    return oracle


class Study:
    """One study run: its base config and settings, the space, the data, the parent run, the best model.

    Args:
        cfg: the study's config; each trial's config is this with the trial's values set.
        settings: the study-level settings (:class:`StudySettings`).
        params: the parsed space.
        data: the study's data (its seed's validation split).
        tracker: the task's MLflow tracker.
        parent_id: the parent run.
        figures: where trial figures are drawn.
    """

    def __init__(self, cfg: DictConfig, settings: StudySettings, params: list[Param], data: Dataset,
                 tracker: tracking.Tracker, parent_id: str, figures: Figures) -> None:
        self.cfg, self.settings, self.params = cfg, settings, params
        self.tracker, self.parent_id, self.figures = tracker, parent_id, figures
        self.started = time.perf_counter()
        self.done_here = 0
        self.best = self._saved_best()
        self.last = TrialOutcome()
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
            self._datasets[key] = load_dataset(cfg.data, self.settings.seed)
        return self._datasets[key]

    # -- best model kept on disk, so a resumed study still has it -------------------------------
    def _saved_best(self) -> dict[str, Any] | None:
        path = self.settings.dir / BEST_DIR / "trial.json"
        return json.loads(path.read_text()) if path.exists() else None

    def _keep_if_best(self, trial_id: str, bundle: ModelBundle, value: float) -> None:
        sign = self.settings.sign
        # Worker processes of one study (siamese.worker) keep their best into the same folder: one at
        # a time, each judging against what is on disk now, not what it read when it started.
        self.settings.dir.mkdir(parents=True, exist_ok=True)
        with open(self.settings.dir / f"{BEST_DIR}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.best = self._saved_best() or self.best
            # A trial run again after a stop replaces its own kept model (trial.json goes with the folder).
            rerun = self.best is not None and self.best["trial_id"] == trial_id
            if self.best is None or rerun or sign * value > sign * self.best["objective"]:
                bundle.save(self.settings.dir / BEST_DIR)
                self.best = {"trial_id": trial_id, "objective": value}
                (self.settings.dir / BEST_DIR / "trial.json").write_text(json.dumps(self.best))

    def kept_model(self, trial_id: str) -> ModelBundle | None:
        """The model kept on disk for ``trial_id``, if it is the one kept."""
        if self.best is not None and self.best["trial_id"] == trial_id:
            try:
                return ModelBundle.load(self.settings.dir / BEST_DIR)
            except Exception:  # gone or damaged (any loader error): the caller retrains the trial's config
                return None
        return None

    # -- one trial -------------------------------------------------------------------------------
    def trial_values(self, trial: kt.engine.trial.Trial) -> tuple[dict[str, Any], DictConfig]:
        """The trial's active values by config key and the full trial config."""
        values = declare(trial.hyperparameters, self.params)
        cfg = trial_config(self.cfg, values)
        hv = trial.hyperparameters.values
        if "tuner/epochs" in hv:  # Hyperband's budget; each trial trains from scratch
            cfg.training.epochs = int(hv["tuner/epochs"])
            cfg.training.early_stopping.patience = None
        cfg.training.verbose = 1 if self.settings.verbose else 0
        return values, cfg

    def run_trial(self, trial: kt.engine.trial.Trial) -> dict[str, float]:
        """Train and assess one trial (one fit per execution) in its own nested run.

        Raises:
            kt.errors.FailedTrialError: the trial failed; its run is FAILED with the reason.
        """
        self.last = TrialOutcome()
        s = self.settings
        tags = {"kind": "trial", "study": s.name, "trial_id": trial.trial_id}
        try:
            with self.tracker.run(f"{s.name}/trial-{trial.trial_id}", nested=True, tags=tags, owner=self.figures):
                values, cfg = self.trial_values(trial)
                self.last.values = values
                runmeta.log_trial_params(trial.trial_id, values)
                mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
                spec = engine.RunSpec.of(cfg)
                results = [self._execute(replace(spec, seed=spec.seed + i), trial.trial_id, i) for i in range(s.executions)]
                metrics = {k: float(np.mean([r.metrics[k] for r in results])) for k in results[0].metrics}
                if len(results) > 1:
                    mlflow.log_metrics(metrics)
                value = metrics[s.objective]
                if not math.isfinite(value):
                    raise RuntimeError(f"objective {s.objective} is {value}")
                best = max(results, key=lambda r: s.sign * r.metrics[s.objective])
                self._keep_if_best(trial.trial_id, best.bundle, value)
                # The trial's time on the study's path: figures drawn in the background are not in it.
                mlflow.log_metric("trial_seconds", time.perf_counter() - self.last.started)
        except Exception as exc:  # recorded FAILED by the tracker; keras-tuner moves on
            self.last.error = f"{type(exc).__name__}: {exc}"
            raise kt.errors.FailedTrialError(self.last.error) from exc
        self.last.value = value
        return metrics

    def _execute(self, spec: engine.RunSpec, trial_id: str, execution: int) -> engine.Assessment:
        """Fit and assess on validation, in the trial run (or a nested run per execution)."""
        several = self.settings.executions > 1
        ctx = (self.tracker.run(f"{self.settings.name}/trial-{trial_id}/exec{execution}", nested=True, tags={"kind": "execution"},
                                owner=self.figures) if several else contextlib.nullcontext())
        with ctx:
            return engine.train_and_record(spec, self.data_for(spec.cfg), False, self.settings.log_trial_models,
                                           self.figures)

    def progress(self, trial: kt.engine.trial.Trial, oracle: kt.Oracle) -> None:
        """One line per trial: n/N, params in short, objective, elapsed, time left."""
        self.done_here += 1
        s, last = self.settings, self.last
        n_done = len([t for t in oracle.trials.values() if t.status in ("COMPLETED", "FAILED", "INVALID")])
        now = time.perf_counter()
        elapsed = now - self.started
        left = elapsed / self.done_here * max(s.max_trials - n_done, 0)
        result = f"{s.objective}={last.value:.4f}" if last.value is not None else f"FAILED ({(last.error or trial.status)[:60]})"
        best = f"best={self.best['objective']:.4f}" if self.best else "best=-"
        print(f"[{n_done}/{s.max_trials}] trial {trial.trial_id} {short(last.values)} | {result} {best} "
              f"| {now - last.started:.0f}s, elapsed {elapsed / 60:.1f}m, ~{left / 60:.1f}m left", flush=True)
