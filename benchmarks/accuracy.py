"""Accuracy on the test set, mean ± sd over seeds: baselines (the logistic one tuned on validation),
the question's model, the accepted fix, and the default study's confirmed winner at a fixed trial
budget. Validation chooses everything; test only reports."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import CACHE, Result, Table, Target, compose_cfg, mean_sd, shared_available, timer, write
from siamese.baselines import LogisticSettings, cosine_scores, majority, score_baseline, tuned_logistic
from siamese.data import load_dataset
from siamese import stops
from siamese.paths import project_root
from siamese.train import train
from siamese.tune import tune

STUDY = "default study (20 trials) + confirmation"
METHODS = ["majority class", "cosine similarity", "logistic, C tuned on validation", "question's model",
           "accepted fix (L1 → Dense(1), BCE)", STUDY]
BASELINES: dict[str, Callable[[Any], Callable]] = {
    "majority class": majority, "cosine similarity": lambda d: cosine_scores,
    "logistic, C tuned on validation": lambda d: tuned_logistic(d, LogisticSettings())[0]}
# Issue 13's absolute targets (the relative one, beating the tuned logistic row, holds on every data set).
FLOORS = {"mrpc-minilm": 0.745, "mnist5k": 0.95, "digits": 0.985}
DIGITS_GAP = 0.005  # digits: the winner's val_auc − test_auc, validation as hard as test
SHARED = {"mrpc-minilm": "mrpc-minilm", "mnist5k": "mnist5k-pixels"}  # data=… → ../shared/datasets/<folder>


def settings(quick: bool) -> dict[str, Any]:
    """What the benchmark runs: data sets, seeds, trial budget and the small sizes of ``--quick``.

    Raises:
        ConfigError: ``SIAMESE_BENCH_DATASETS`` names a data set this run cannot have (unknown, its shared
            folder absent, or a shared one under ``--quick``), or ``SIAMESE_BENCH_SEEDS`` a seed it does not run.
    """
    from siamese.errors import ConfigError

    shared = [name for name, folder in SHARED.items() if shared_available(folder)]
    datasets = ["digits"] + ([] if quick else shared)
    if os.environ.get("SIAMESE_BENCH_DATASETS"):  # a subset, e.g. to run one data set again
        asked = [d.strip() for d in os.environ["SIAMESE_BENCH_DATASETS"].split(",") if d.strip()]
        unknown = [d for d in asked if d not in datasets]
        if unknown or not asked:
            raise ConfigError(f"SIAMESE_BENCH_DATASETS={os.environ['SIAMESE_BENCH_DATASETS']}: {unknown or 'none'} not "
                              f"among this run's data sets {datasets} (--quick runs digits only; the shared ones need "
                              "../shared/datasets)")
        datasets = [d for d in datasets if d in asked]
    seeds = [0, 1] if quick else [0, 1, 2]
    if os.environ.get("SIAMESE_BENCH_SEEDS"):  # a subset, e.g. to split a run over processes (cells merge by key)
        raw = os.environ["SIAMESE_BENCH_SEEDS"]
        asked_seeds = [s.strip() for s in raw.split(",") if s.strip()]
        if not asked_seeds or any(not s.isdigit() or int(s) not in seeds for s in asked_seeds):
            raise ConfigError(f"SIAMESE_BENCH_SEEDS={raw}: give a comma-separated subset of this run's seeds {seeds}")
        seeds = [s for s in seeds if str(s) in asked_seeds]
    return {
        "datasets": datasets,
        "seeds": seeds,
        "budget": 2 if quick else 20,
        "small": ["++data.n_train=600", "++data.n_test=200", "training.epochs=3"] if quick else [],
        # Quick: confirmation of the best trial on two seeds (the path, not the figure).
        "study": ["confirm.top_k=1", "confirm.seeds=2"] if quick else [],
    }


def _study_rows(data: str, runs: list[dict[str, float]], objective: str = "val_auc") -> list[Any]:
    """The confirmed winner per seed: its kept model's validation vs test AUC and its seed spread."""
    col = lambda k: [r.get(k, float("nan")) for r in runs]  # noqa: E731
    gap = [v - t for v, t in zip(col(objective), col("test_auc"))]
    return [data, len(runs), mean_sd(col(f"confirm_{objective}_mean")), mean_sd(col(f"confirm_{objective}_sd")),
            mean_sd(col(objective)), mean_sd(col("test_auc")), mean_sd(gap), round(statistics.mean(col("seconds")), 1)]


def partial_path(quick: bool) -> Path:
    """Where the result so far is rewritten after each cell (one file per size: a quick run does not
    overwrite a full run's cells)."""
    return CACHE / ("partial-quick" if quick else "partial") / "accuracy.json"


def fingerprint(s: dict[str, Any]) -> str:
    """What a cell's figures depend on besides its data set and seed: the settings, the Keras backend and
    the source of ``siamese/``, ``conf/`` and this benchmark. A cell kept from an interrupted run is reused
    only under the same fingerprint, so a code or config change between the two runs starts afresh."""
    import keras

    # Which data sets and seeds are not part of it: a cell's key names them, so cells of runs over different
    # subsets (SIAMESE_BENCH_DATASETS, SIAMESE_BENCH_SEEDS) of the same code can be kept together.
    h = hashlib.sha256(json.dumps({k: s[k] for k in sorted(s) if k not in ("datasets", "seeds")},
                                  sort_keys=True).encode())
    h.update(keras.backend.backend().encode())
    root = project_root()
    files = [*sorted((root / "siamese").rglob("*.py")), *sorted((root / "conf").rglob("*.yaml")),
             root / "benchmarks" / "accuracy.py", root / "benchmarks" / "common.py"]
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def finished_cells(quick: bool) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """The cells (data set × seed) an interrupted run finished, if its code and settings are this run's.

    Returns:
        The cells by key (``digits/s0``; only this run's data sets) and a line saying what was kept or why
        nothing was.
    """
    path, s = partial_path(quick), settings(quick)
    if not path.is_file():
        return {}, f"nothing to resume: no {path}; starting afresh"
    try:
        saved = json.loads(path.read_text())["data"]
        cells, fp = dict(saved["cells"]), saved["fingerprint"]
        for key, rows in cells.items():  # what summarise reads of each row, checked before it is trusted
            data, _, seed = key.rpartition("/s")
            if not data or not seed.isdigit() or not isinstance(rows, list) or not rows:
                raise ValueError(key)
            for r in rows:
                if not (isinstance(r["method"], str) and isinstance(r["seconds"], (int, float))
                        and all(isinstance(v, (int, float)) for v in r["metrics"].values())):
                    raise ValueError(key)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return {}, f"nothing to resume: {path} cannot be read ({type(exc).__name__}); starting afresh"
    if fp != fingerprint(s):
        return {}, (f"nothing to resume: {path} was written by other code or settings "
                    "(siamese/, conf/, the benchmark or the Keras backend differ); starting afresh")
    cells = {k: v for k, v in cells.items()
             if k.rsplit("/s", 1)[0] in s["datasets"] and int(k.rsplit("/s", 1)[1]) in s["seeds"]}
    return cells, f"resuming: {len(cells)} finished cell(s) kept from {path} ({', '.join(cells) or 'none'})"


def unfinished(quick: bool) -> str | None:
    """A line for a run started without ``--resume`` over an interrupted one it would discard: the cells
    kept, the file, and the two ways on; None when there is nothing resumable to lose."""
    cells, _ = finished_cells(quick)
    s = settings(quick)
    if not cells or len(cells) >= len(s["datasets"]) * len(s["seeds"]):
        return None
    return (f"{partial_path(quick)} holds {len(cells)} finished cell(s) of an interrupted run of this code "
            f"({', '.join(cells)}): add --resume to keep them, or delete that file to start afresh")


def run(quick: bool, store: Path, kept: dict[str, list[dict[str, Any]]] | None = None) -> Result:
    """Every cell (data set × seed): the baselines, the question's model and its fix, the default study.

    Args:
        quick: small data, 2 trials, 3 epochs (the path, not the figures).
        store: the MLflow store the runs and studies go to (a resumed run needs the interrupted one's).
        kept: cells an interrupted run of the same code finished (:func:`finished_cells`): not run again.
    """
    s = settings(quick)
    cells: dict[str, list[dict[str, Any]]] = {}
    fp = fingerprint(s)
    # Seed-major, and the result so far written after each cell: a run cut short keeps every cell it
    # finished (partial_path), which `python -m benchmarks.run --resume` does not run again.
    for seed in s["seeds"]:
        for data in s["datasets"]:
            # A stop that library code swallowed (Keras has bare excepts; siamese.stops remembers it) is
            # raised here at the latest: the run must not go on to the next cell after Ctrl-C.
            stops.check()
            key = f"{data}/s{seed}"
            if kept and key in kept:
                cells[key] = kept[key]
                print(f"accuracy: {key} kept from an earlier run", flush=True)
                continue
            rows: list[dict[str, Any]] = []

            def add(method: str, metrics: dict[str, Any], seconds: float) -> None:
                rows.append({"method": method, "seconds": seconds,
                             "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}})

            common = [f"data={data}", f"seed={seed}", "training.verbose=0", *s["small"]]
            cfg = compose_cfg("train", store, *common)
            with timer() as t_load:
                dataset = load_dataset(cfg.data, seed)
            for method, make in BASELINES.items():
                with timer() as t:
                    metrics = score_baseline(make(dataset), dataset)
                add(method, metrics, t["s"] + t_load["s"])
            for method, preset in ((METHODS[3], "question"), (METHODS[4], "question_fix")):
                with timer() as t:
                    metrics = train(compose_cfg("train", store, *common, f"experiment={preset}"))
                add(method, metrics, t["s"])
            stops.check()
            study_dir = CACHE / "studies" / f"accuracy-{data}-s{seed}"
            shutil.rmtree(study_dir, ignore_errors=True)
            with timer() as t:
                metrics = tune(compose_cfg("tune", store, *common, f"study=bench-{data}-s{seed}", f"study_dir={study_dir}",
                                           f"tuner.max_trials={s['budget']}", *s["study"]))
            add(STUDY, metrics, t["s"])
            cells[key] = rows
            write(summarise(quick, s, cells, store, fp, kept), partial_path(quick).parent)
            print(f"accuracy: {key} done", flush=True)
    return summarise(quick, s, cells, store, fp, kept)


def summarise(quick: bool, s: dict[str, Any], cells: dict[str, list[dict[str, Any]]], store: Path, fp: str,
              kept: dict[str, list[dict[str, Any]]] | None = None) -> Result:
    """The tables and targets from the cells finished so far (each cell's rows are kept in the result's
    data, with the fingerprint, so an interrupted run can be resumed)."""
    scores: dict[tuple[str, str], list[dict[str, float]]] = {}
    studies: dict[str, list[str]] = {}
    for key, rows in cells.items():
        data, seed = key.rsplit("/s", 1)
        for r in rows:
            scores.setdefault((data, r["method"]), []).append({**r["metrics"], "seconds": r["seconds"]})
        studies.setdefault(data, []).append(f"bench-{data}-s{seed}")
    n = max(len(v) for v in scores.values())
    table = Table(f"Test set, mean ± sd over seeds (up to {n}; thresholds chosen on validation)",
                  ["data", "method", "seeds", "test accuracy", "test AUC", "test F1", "wall s"])
    spread = Table("The study's confirmed winner, mean ± sd over its studies (one per seed): its validation objective over fresh "
                   "seeds (mean, and sd = the seed spread), its kept model's val vs test AUC, the study's wall time",
                   ["data", "studies", "confirm val_auc mean", "confirm val_auc sd (seeds)", "val_auc", "test_auc",
                    "val − test AUC", "study wall s"])
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for (data, method), runs in scores.items():
        row = {k: [r.get(k, float("nan")) for r in runs] for k in
               ("test_accuracy", "test_auc", "test_f1", "val_auc", "seconds", "confirm_val_auc_sd")}
        summary.setdefault(data, {})[method] = {k: statistics.mean(v) for k, v in row.items()}
        # The row says the trial budget this run had (a --quick run's study has 2 trials, not 20).
        label = STUDY.replace("(20 trials)", f"({s['budget']} trials)") if method == STUDY else method
        table.rows.append([data, label, len(runs), mean_sd(row["test_accuracy"]), mean_sd(row["test_auc"]),
                           mean_sd(row["test_f1"]), round(statistics.mean(row["seconds"]), 1)])
        if method == STUDY:
            spread.rows.append(_study_rows(data, runs))
    resumed = sorted(set(kept or {}) & set(cells))
    notes = [f"{len(resumed)} of {len(cells)} cells (data set × seed: {', '.join(resumed)}) kept from an earlier run "
             "of the same code and settings (--resume); their wall seconds are that run's"] if resumed else []
    result = Result("accuracy", quick, "", [table, spread], notes=notes, data={
        "summary": summary, "studies": studies, "store": str(store), "settings": {k: v for k, v in s.items()},
        "fingerprint": fp, "cells": cells})
    for data, rows in summary.items():
        won, logistic = rows[STUDY]["test_accuracy"], rows[METHODS[2]]["test_accuracy"]
        result.targets.append(Target(f"{data}: the study's confirmed winner beats the tuned logistic row's mean test accuracy",
                                     f"{won:.4f} vs {logistic:.4f}", won > logistic))
        if data in FLOORS:
            result.targets.append(Target(f"{data}: the study's mean test accuracy ≥ {FLOORS[data]}",
                                         f"{won:.4f}", won >= FLOORS[data]))
        if data == "digits":
            gap = rows[STUDY]["val_auc"] - rows[STUDY]["test_auc"]
            result.targets.append(Target(f"digits: the winner's val_auc − test_auc ≤ {DIGITS_GAP}",
                                         f"{gap:+.4f}", gap <= DIGITS_GAP))
    return result
