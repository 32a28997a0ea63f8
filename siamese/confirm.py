"""Seed confirmation: after the search, the top trials are retrained with fresh seeds, and the
winner is the configuration with the best mean validation objective, not one seed's luck.

Each retraining is a nested run of the study's parent, tagged ``kind=confirm`` with the study, the
``trial_id`` and its ``confirm_seed``; its model is kept on disk under ``<study_dir>/confirm/``. A
resumed study reuses every confirmation run that finished (FINISHED in MLflow, its model on disk).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras_tuner as kt
import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from siamese import engine, tracking
from siamese.bundle import ModelBundle
from siamese.errors import ConfigError
from siamese.figures import Figures
from siamese.report import short

CONFIRM_DIR = "confirm"


@dataclass(frozen=True)
class ConfirmSettings:
    """``confirm.top_k`` trials, each retrained with ``confirm.seeds`` fresh seeds; ``top_k=0``: off."""

    top_k: int = 3
    seeds: int = 3

    @classmethod
    def of(cls, cfg: DictConfig) -> "ConfirmSettings":
        """Read and check the study config's ``confirm`` node (defaults when absent).

        Raises:
            ConfigError: a count that is not a whole number, ``top_k`` below 0, or ``seeds`` below 1.
        """
        node = cfg.get("confirm") or {}
        values = {}
        for key, least in (("top_k", 0), ("seeds", 1)):
            value = node.get(key, getattr(cls, key))
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"confirm.{key} must be a whole number of at least {least}, got {value!r}")
            values[key] = value
        return cls(**values)


@dataclass
class SeedRun:
    """One confirmation run: its seed, MLflow run, validation metrics and where its model is."""

    seed: int
    run_id: str
    metrics: dict[str, float]


@dataclass
class Candidate:
    """A top trial and its confirmation runs."""

    trial: kt.engine.trial.Trial
    values: dict[str, Any]
    cfg: DictConfig
    search_value: float
    runs: list[SeedRun] = field(default_factory=list)

    def objective_values(self, objective: str) -> np.ndarray:
        return np.array([r.metrics[objective] for r in self.runs], dtype=float)

    def mean(self, objective: str) -> float:
        return float(self.objective_values(objective).mean()) if self.runs else float("nan")

    def sd(self, objective: str) -> float:
        """Sample standard deviation over seeds (0 with one seed)."""
        v = self.objective_values(objective)
        return float(v.std(ddof=1)) if len(v) > 1 else 0.0


@dataclass
class Confirmation:
    """The outcome: every candidate, the winner, and the winner's best seed (the kept model)."""

    objective: str
    candidates: list[Candidate]
    winner: Candidate
    best: SeedRun
    bundle: ModelBundle

    def metrics(self) -> dict[str, float]:
        """The parent's confirmation metrics (the winner's mean and sd, and the seed count)."""
        o = self.objective
        return {f"confirm_{o}_mean": self.winner.mean(o), f"confirm_{o}_sd": self.winner.sd(o),
                "confirm_seeds": float(len(self.winner.runs))}

    def annotate(self, board: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
        """The leaderboard with each candidate trial's confirmation mean, sd and seed count."""
        o = self.objective
        runs = frame[frame["tags.kind"] == "trial"].set_index("tags.trial_id")["run_id"].to_dict()
        by_run = {runs.get(c.trial.trial_id): c for c in self.candidates}
        board = board.copy()
        for name, get in ((f"confirm_{o}_mean", lambda c: c.mean(o)), (f"confirm_{o}_sd", lambda c: c.sd(o)),
                          ("confirm_seeds", lambda c: float(len(c.runs)))):
            board[name] = [get(by_run[r]) if r in by_run else float("nan") for r in board["run_id"]]
        return board


def fresh_seeds(seed: int, executions: int, n: int) -> list[int]:
    """Seeds no execution of a trial used (those are ``seed … seed+executions−1``)."""
    return [seed + executions + j for j in range(n)]


def _finished(parent_id: str) -> dict[tuple[str, int], SeedRun]:
    """This study's confirmation runs that finished, by (trial id, seed)."""
    frame = tracking.children(parent_id)
    if frame.empty or "tags.confirm_seed" not in frame.columns:
        return {}
    done = frame[(frame["tags.kind"] == "confirm") & (frame["status"] == "FINISHED")]
    out = {}
    for _, row in done.iterrows():
        metrics = {c[len("metrics."):]: float(v) for c, v in row.items() if c.startswith("metrics.") and pd.notna(v)}
        key = (str(row["tags.trial_id"]), int(row["tags.confirm_seed"]))
        out[key] = SeedRun(key[1], row["run_id"], metrics)
    return out


def _model_dir(study: Any, trial_id: str, seed: int) -> Path:
    return study.settings.dir / CONFIRM_DIR / f"{trial_id}-s{seed}"


def _retrain(study: Any, candidate: Candidate, seed: int, figures: Figures) -> SeedRun | None:
    """One confirmation run; its model saved before the run ends. None (run FAILED) if it fails."""
    s = study.settings
    tags = {"kind": "confirm", "study": s.name, "trial_id": candidate.trial.trial_id, "confirm_seed": str(seed)}
    spec = replace(engine.RunSpec.of(candidate.cfg), seed=seed)
    try:
        with study.tracker.run(f"{s.name}/confirm-{candidate.trial.trial_id}-s{seed}", nested=True, tags=tags) as run:
            mlflow.log_params({"trial_id": candidate.trial.trial_id, "seed": seed,
                               **{k: str(v) for k, v in candidate.values.items()}})
            cfg = OmegaConf.merge(candidate.cfg, {"seed": seed})
            mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
            result = engine.train_and_record(spec, study.data_for(candidate.cfg), False, False, figures)
            if not math.isfinite(result.metrics[s.objective]):
                raise engine.Diverged(f"objective {s.objective} is {result.metrics[s.objective]}")
            result.bundle.save(_model_dir(study, candidate.trial.trial_id, seed))
    except Exception as exc:  # the run is FAILED with the reason; the other seeds go on
        print(f"warning: confirmation of trial {candidate.trial.trial_id} with seed {seed} failed: "
              f"{type(exc).__name__}: {str(exc)[:120]}", flush=True)
        return None
    return SeedRun(seed, run.info.run_id, result.metrics)


def confirm(study: Any, tuner: kt.Tuner, settings: ConfirmSettings) -> Confirmation | None:
    """Retrain the top trials with fresh seeds and pick the winner by mean validation objective.

    Args:
        study: the :class:`siamese.study.Study` (its settings, tracker, parent run, data).
        tuner: the finished search (its oracle ranks the trials).
        settings: how many trials and seeds.

    Returns:
        The confirmation, or None when it is off or no candidate has a finished confirmation run.
    """
    s = study.settings
    if settings.top_k == 0:
        return None
    top = [t for t in tuner.oracle.get_best_trials(settings.top_k) if t.status == "COMPLETED"]
    seeds = fresh_seeds(s.seed, s.executions, settings.seeds)
    done = _finished(study.parent_id)
    figures = Figures("off" if study.figures.mode == "off" else "inline")
    print(f"confirming the top {len(top)} trials with {len(seeds)} fresh seeds each ({seeds})", flush=True)
    candidates = []
    for trial in top:
        values, cfg = study.trial_values(trial)
        c = Candidate(trial, values, cfg, float(trial.score))
        for seed in seeds:
            run = done.get((trial.trial_id, seed))
            if run is None or not (_model_dir(study, trial.trial_id, seed) / "bundle.json").exists():
                run = _retrain(study, c, seed, figures)
            if run is not None:
                c.runs.append(run)
        candidates.append(c)
        _log_on_trial(study.parent_id, c, s.objective)
        print(f"  trial {trial.trial_id} {short(values, 40)} | search {s.objective}={c.search_value:.4f} | "
              f"confirmed {_spread(c, s.objective)}", flush=True)
    ranked = [c for c in candidates if c.runs]
    if not ranked:
        print("warning: every confirmation run failed; the search's best trial stands unconfirmed", flush=True)
        return None
    winner = max(ranked, key=lambda c: s.sign * c.mean(s.objective))  # ties: the better search rank
    best = max(winner.runs, key=lambda r: s.sign * r.metrics[s.objective])
    bundle = ModelBundle.load(_model_dir(study, winner.trial.trial_id, best.seed))
    print(f"winner: trial {winner.trial.trial_id}, {_spread(winner, s.objective)}; kept model: seed {best.seed} "
          f"({s.objective}={best.metrics[s.objective]:.4f})", flush=True)
    return Confirmation(s.objective, candidates, winner, best, bundle)


def _spread(c: Candidate, objective: str) -> str:
    return (f"{objective}={c.mean(objective):.4f} ± {c.sd(objective):.4f} over {len(c.runs)} seeds"
            if c.runs else "no confirmation run finished")


def _log_on_trial(parent_id: str, c: Candidate, objective: str) -> None:
    """The candidate's confirmation mean and sd on its trial run too, to compare runs in the UI."""
    frame = tracking.children(parent_id)
    rows = frame[(frame["tags.kind"] == "trial") & (frame["tags.trial_id"] == c.trial.trial_id)
                 & (frame["status"] == "FINISHED")]
    if not c.runs or rows.empty:
        return
    now = int(time.time() * 1000)
    values = {f"confirm_{objective}_mean": c.mean(objective), f"confirm_{objective}_sd": c.sd(objective)}
    MlflowClient().log_batch(str(rows["run_id"].iloc[0]), metrics=[Metric(k, v, now, 0) for k, v in values.items()])


def tags(c: Confirmation) -> dict[str, str]:
    """The parent's tags for a confirmed winner."""
    return {"confirm_winner_trial_id": c.winner.trial.trial_id, "best_run_id": c.best.run_id,
            "confirm_candidates": json.dumps({x.trial.trial_id: [r.seed for r in x.runs] for x in c.candidates})}
