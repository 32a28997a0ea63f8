"""Study throughput: trials per hour of the default study and time to its best objective, and what
tracking costs a trial (the same trial configs trained again with no MLflow calls)."""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import mlflow
from omegaconf import OmegaConf

from benchmarks.common import CACHE, Result, Table, Target, compose_cfg
from siamese.data import load_dataset
from siamese.tracking import children, find_study
from siamese.train import assess, fit
from siamese.tune import tune


def _study(quick: bool, store: Path, name: str, *overrides: str) -> tuple[float, Any, Any]:
    """Run a fresh default study; its wall time, parent run and each trial run's duration."""
    budget = 3 if quick else 12
    small = ["++data.n_train=600", "++data.n_test=200", "training.epochs=3"] if quick else []
    study_dir = CACHE / "studies" / name
    shutil.rmtree(study_dir, ignore_errors=True)
    cfg = compose_cfg("tune", store, f"study={name}", f"study_dir={study_dir}", f"tuner.max_trials={budget}", *small, *overrides)
    t0 = time.perf_counter()
    tune(cfg)
    wall = time.perf_counter() - t0
    parent = find_study(cfg)
    return wall, parent, cfg


def _trials(parent: Any) -> tuple[Any, list[float]]:
    frame = children(parent.info.run_id)
    trials = frame[frame["tags.kind"] == "trial"].sort_values("start_time")
    return trials, ((trials["end_time"] - trials["start_time"]).dt.total_seconds()).tolist()


def run(quick: bool, store: Path) -> Result:
    wall, parent, cfg = _study(quick, store, "bench-throughput")
    trials, tracked = _trials(parent)
    best = trials.loc[trials["metrics.val_auc"].idxmax()]
    to_best = best["end_time"].timestamp() - parent.info.start_time / 1000
    # The same study without per-trial figures (trial_figures=false): same seed, same trials.
    _, parent_nofig, _ = _study(quick, store, "bench-throughput-nofig", "trial_figures=false")
    _, tracked_nofig = _trials(parent_nofig)

    # The same trials, untracked: fit and choose thresholds on validation, nothing logged.
    untracked = []
    datasets: dict[str, object] = {}
    for run_id in trials["run_id"]:
        trial_cfg = OmegaConf.create(mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml"))
        key = OmegaConf.to_yaml(trial_cfg.data)
        if key not in datasets:
            datasets[key] = load_dataset(trial_cfg.data, int(cfg.seed))
        t1 = time.perf_counter()
        model, kind, _ = fit(trial_cfg, datasets[key])
        assess(model, kind, datasets[key], with_test=False)
        untracked.append(time.perf_counter() - t1)

    overhead, overhead_nofig = sum(tracked) / sum(untracked), sum(tracked_nofig) / sum(untracked)
    table = Table(f"Default study on digits, random tuner, {len(trials)} trials", ["measure", "value"])
    table.rows += [
        ["study wall time (s, incl. baselines and final test scoring)", round(wall, 1)],
        ["trials per hour", round(len(trials) / wall * 3600)],
        ["time to the best objective (s)", round(to_best, 1)],
        ["best val_auc", round(float(best["metrics.val_auc"]), 4)],
        ["mean trial time, untracked (s)", round(statistics.mean(untracked), 2)],
        ["mean trial time, tracked (s)", round(statistics.mean(tracked), 2)],
        ["mean trial time, tracked, trial_figures=false (s)", round(statistics.mean(tracked_nofig), 2)],
        ["tracking overhead (tracked / untracked)", round(overhead, 3)],
        ["tracking overhead, trial_figures=false", round(overhead_nofig, 3)],
    ]
    result = Result("throughput", quick, "", [table],
                    data={"tracked_s": tracked, "tracked_nofig_s": tracked_nofig, "untracked_s": untracked,
                          "wall_s": wall, "time_to_best_s": to_best})
    result.targets.append(Target("tracking adds ≤ 10% to a trial's time (default: with per-trial figures)",
                                 f"{100 * (overhead - 1):+.1f}% ({100 * (overhead_nofig - 1):+.1f}% with trial_figures=false)",
                                 overhead <= 1.10))
    result.notes.append("Tracked: each trial's MLflow run from start to end (params, config, per-epoch metrics, final "
                        "metrics, figures). Untracked: the same trial configs trained again with fit + validation "
                        "thresholds only, in the same process after the studies.")
    return result
