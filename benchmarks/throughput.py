"""Study throughput: trials per hour of the default study and time to its best objective, and what
tracking costs a trial: the same trial configs trained again with no MLflow calls.

A trial's tracked time is its ``trial_seconds`` (its time on the study's path, logged by the study);
its untracked time is fit + validation thresholds. Each is measured in every round and the per-trial
minimum kept (as ``timeit`` does: noise on a shared machine only adds time), so one stalled trial
does not decide the ratio. Rounds interleave the variants: per round, the default study (figures
drawn by the background worker), the same study with figures drawn inline, with none, then the
untracked pass.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from benchmarks.common import CACHE, Result, Table, Target, compose_cfg, tune_in_child
from siamese.data import load_dataset
from siamese.figures import FigureJob, Figures
from siamese.engine import RunSpec, assess, fit
from siamese.tracking import Tracker, children
from siamese.tune import tune

VARIANTS = {"background": "trial_figures=background", "inline": "trial_figures=inline", "off": "trial_figures=false"}


def _study(quick: bool, store: Path, name: str, *overrides: str) -> tuple[float, Any, pd.DataFrame]:
    """Run a fresh default study; its wall time, parent run and trial runs (in trial order)."""
    budget = 3 if quick else 12
    small = ["++data.n_train=600", "++data.n_test=200", "training.epochs=3"] if quick else []
    study_dir = CACHE / "studies" / name
    shutil.rmtree(study_dir, ignore_errors=True)
    cfg = compose_cfg("tune", store, f"study={name}", f"study_dir={study_dir}", f"tuner.max_trials={budget}", *small, *overrides)
    t0 = time.perf_counter()
    tune(cfg)
    wall = time.perf_counter() - t0
    parent = Tracker(cfg.tracking).find_study(cfg.study)
    frame = children(parent.info.run_id)
    trials = frame[frame["tags.kind"] == "trial"].sort_values("tags.trial_id").reset_index(drop=True)
    return wall, parent, trials


def _by_backend(quick: bool, store: Path) -> dict[str, dict[str, float]]:
    """The default study on each Keras backend, each in a process of its own (a process runs one
    backend): wall time as a user sees it (process start to exit), trials per hour, best val_auc."""
    budget = 3 if quick else 12
    small = ["++data.n_train=600", "++data.n_test=200", "training.epochs=3"] if quick else []
    out = {}
    with tempfile.TemporaryDirectory(prefix="jax-cache-") as fresh:
        # JAX without a compilation cache, and with one that starts empty: its hits are the study's own
        # (trials of one architecture), not a previous run's.
        variants = {"tensorflow": ["backend=tensorflow"], "jax": ["backend=jax", "compilation_cache=null"],
                    "jax, compilation cache (empty at start)": ["backend=jax", f"compilation_cache={fresh}"]}
        runs = {name: tune_in_child(store, f"bench-throughput-backend-{i}", *overrides, f"tuner.max_trials={budget}",
                                    "confirm.top_k=0", *small, what=f"the {name} study")  # confirmation off: trials compared
                for i, (name, overrides) in enumerate(variants.items())}
    for keras_backend, (wall, _, frame) in runs.items():
        trials = frame[frame["tags.kind"] == "trial"]
        out[keras_backend] = {"wall_s": wall, "trials": len(trials), "trials_per_hour": len(trials) / wall * 3600,
                              "trial_seconds": float(trials["metrics.trial_seconds"].sum()),
                              "best_val_auc": float(trials["metrics.val_auc"].max())}
    return out


def _untracked(trials: pd.DataFrame) -> tuple[list[float], tuple[Any, ...]]:
    """The trials' configs trained again: fit and validation thresholds, nothing logged.

    Returns:
        Seconds per trial, and the last trial's (history, split scores, threshold) for figures.
    """
    out, datasets = [], {}
    for run_id in trials["run_id"]:
        trial_cfg = OmegaConf.create(mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml"))
        key = OmegaConf.to_yaml(trial_cfg.data)
        if key not in datasets:
            datasets[key] = load_dataset(trial_cfg.data, int(trial_cfg.seed))
        t0 = time.perf_counter()
        fitted = fit(RunSpec.of(trial_cfg), datasets[key])
        result = assess(fitted, datasets[key], with_test=False)
        out.append(time.perf_counter() - t0)
    return out, (fitted.history, {k: (c.y, c.scores) for k, c in result.curves.items()}, result.bundle.threshold)


def _figure_path_cost(store_uri: str, experiment: str, example: tuple[Any, ...], reps: int = 5) -> dict[str, float]:
    """Median seconds the trial waits for one run's three figures: drawn inline, or handed to the worker."""
    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name(experiment).experiment_id
    waits: dict[str, list[float]] = {"inline": [], "background": []}
    with Figures("background", store_uri) as worker:
        for mode, figures in (("inline", Figures("inline", store_uri)), ("background", worker)):
            for _ in range(reps):
                job = FigureJob(client.create_run(exp, tags={"kind": "bench-figures"}).info.run_id, *example)
                t0 = time.perf_counter()
                figures.add(job)
                if figures.takes_over(job.run_id):
                    figures.hand_over(job.run_id)
                waits[mode].append(time.perf_counter() - t0)
                client.set_terminated(job.run_id)  # as Tracker.run does in a study (either way: not timed)
        if worker.close():
            raise RuntimeError("the figure worker failed in the benchmark")
    return {mode: statistics.median(w) for mode, w in waits.items()}


def _params(trials: pd.DataFrame) -> list[dict[str, Any]]:
    cols = sorted(c for c in trials.columns if c.startswith("params."))
    return trials[cols].to_dict("records")


def run(quick: bool, store: Path) -> Result:
    rounds = 1 if quick else 2
    times: dict[str, list[list[float]]] = {v: [] for v in [*VARIANTS, "untracked"]}
    first: dict[str, Any] = {}
    for r in range(rounds):
        for variant, override in VARIANTS.items():
            wall, parent, trials = _study(quick, store, f"bench-throughput-{variant}-{r}", override)
            if not first:
                first = {"wall": wall, "parent": parent, "trials": trials}
            elif _params(trials) != _params(first["trials"]):  # same seed, same tuner: must be the same trials
                raise RuntimeError(f"study {variant} round {r} sampled other trials than the first")
            times[variant].append(trials["metrics.trial_seconds"].tolist())
        untracked, example = _untracked(first["trials"])
        times["untracked"].append(untracked)
    best_of = {v: [min(per_round) for per_round in zip(*runs)] for v, runs in times.items()}
    base = sum(best_of["untracked"])
    overhead = {v: sum(best_of[v]) / base for v in VARIANTS}

    trials, parent, wall = first["trials"], first["parent"], first["wall"]
    best = trials.loc[trials["metrics.val_auc"].idxmax()]
    to_best = best["start_time"].timestamp() + best["metrics.trial_seconds"] - parent.info.start_time / 1000
    n = len(trials)
    study = Table(f"Default study on digits, random tuner, {n} trials (first round)", ["measure", "value"])
    study.rows += [
        ["study wall time (s, incl. baselines and final test scoring)", round(wall, 1)],
        ["trials per hour", round(n / wall * 3600)],
        ["time to the best objective (s)", round(to_best, 1)],
        ["best val_auc", round(float(best["metrics.val_auc"]), 4)],
    ]
    cost = Table(f"What tracking adds to a trial: per-trial minimum over {rounds} round(s), summed over {n} trials",
                 ["variant", "trial time (s, sum)", "mean per trial (s)", "tracked / untracked"])
    labels = {"untracked": "untracked (fit + thresholds)", "background": "tracked, figures in the background (default)",
              "inline": "tracked, figures inline", "off": "tracked, trial_figures=false"}
    for v in ["untracked", *VARIANTS]:
        cost.rows.append([labels[v], round(sum(best_of[v]), 1), round(sum(best_of[v]) / n, 2),
                          1.0 if v == "untracked" else round(overhead[v], 3)])
    waits = _figure_path_cost(mlflow.get_tracking_uri(), "digits", example)
    figs = Table("The trial's wait for its three figures (median of 5 runs, the last trial's validation scores)",
                 ["figures", "seconds on the trial's path", "share of the mean untracked trial"])
    for mode, wait in waits.items():
        figs.rows.append([f"{mode}{' (default)' if mode == 'background' else ''}", round(wait, 4),
                          f"{100 * wait / (base / n):.1f}%"])
    backends = _by_backend(quick, store)
    by_backend = Table(f"The default study on each Keras backend ({backends['tensorflow']['trials']} trials, each "
                       "backend in its own process, wall time from process start to exit)",
                       ["backend", "wall (s)", "trials per hour", "trial time (s, sum)", "best val_auc", "× tensorflow"])
    for name, b in backends.items():
        by_backend.rows.append([name, round(b["wall_s"], 1), round(b["trials_per_hour"]), round(b["trial_seconds"], 1),
                                round(b["best_val_auc"], 4),
                                round(b["trials_per_hour"] / backends["tensorflow"]["trials_per_hour"], 2)])
    raw = {v: round(sum(sum(t) / sum(u) for t, u in zip(times[v], times["untracked"])) / rounds, 3) for v in VARIANTS}
    result = Result("throughput", quick, "", [study, cost, figs, by_backend], data={"backends": backends, "seconds": times, "figure_wait_s": waits, "wall_s": wall, "time_to_best_s": to_best})
    result.targets.append(Target("tracking adds ≤ 10% to a trial's time (default: figures in the background)",
                                 f"{100 * (overhead['background'] - 1):+.1f}% (inline figures "
                                 f"{100 * (overhead['inline'] - 1):+.1f}%, none {100 * (overhead['off'] - 1):+.1f}%)",
                                 overhead["background"] <= 1.10))
    faster = max(backends, key=lambda k: backends[k]["trials_per_hour"])
    gain = backends[faster]["trials_per_hour"] / backends["tensorflow"]["trials_per_hour"]
    result.targets.append(Target("default digits study: ≥ 1.5× today's (tensorflow) trials/hour on the faster backend",
                                 f"{gain:.2f}× ({faster})", gain >= 1.5))
    result.notes.append("Tracked: the trial's `trial_seconds` (run start to its last logged value: params, config, "
                        "per-epoch metrics, final metrics, best-model save, inline figures). Untracked: the same "
                        "configs, fit + validation thresholds, in the same process.")
    result.notes.append("Without the per-trial minimum (tracked / untracked sums of the same round, mean over rounds): "
                        + ", ".join(f"{k} {v}" for k, v in raw.items()) + ".")
    return result


if __name__ == "__main__":  # python -m benchmarks.throughput: only the per-backend studies (minutes, not the hour)
    backends = _by_backend(False, Path(tempfile.mkdtemp(prefix="bench-backends-")))
    print("| backend | wall (s) | trials per hour | trial time (s, sum) | best val_auc | × tensorflow |\n|---|---|---|---|---|---|")
    for name, b in backends.items():
        print(f"| {name} | {b['wall_s']:.1f} | {b['trials_per_hour']:.0f} | {b['trial_seconds']:.1f} | {b['best_val_auc']:.4f} | "
              f"{b['trials_per_hour'] / backends['tensorflow']['trials_per_hour']:.2f} |")
