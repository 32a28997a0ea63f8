"""Parallel trials: trials per hour and time to the best objective of the default digits study run by
one process (``tuner.workers=0``), by a chief with 1 local worker and with 2 (``tuner.workers=1|2``);
seed confirmation off (``confirm.top_k=0``: it runs in the chief alone, after the search).

Each study is a fresh ``python -m siamese.tune`` process timed from start to exit, as a user sees it
(worker start-up included). The random tuner with the study's seed hands out the same trials in the
same order whatever the number of workers; the benchmark checks that every variant ran the same
trial configs, so the comparison is of the same work. The last two rows run the same study on JAX
(each worker one XLA thread, each study a compilation cache that starts empty).
"""

from __future__ import annotations

import os
import resource
import tempfile
from pathlib import Path

from benchmarks.common import Result, Table, Target, tune_in_child

VARIANTS = (("tensorflow", 0), ("tensorflow", 1), ("tensorflow", 2), ("jax", 1), ("jax", 2))  # backend, tuner.workers


def _study(quick: bool, store: Path, keras_backend: str, workers: int) -> dict[str, float | list]:
    """The default study (``quick``: 4 small trials) on ``keras_backend`` with ``workers``; wall time and its trials."""
    size = ["++data.n_train=600", "++data.n_test=200", "training.epochs=3", "tuner.max_trials=4"] if quick else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="jax-cache-") as cache:
        # Seed confirmation retrains the top trials in the chief alone after the search: not what is compared.
        wall, parent, frame = tune_in_child(store, f"bench-parallel-{keras_backend}-{workers}", f"backend={keras_backend}",
                                            f"compilation_cache={cache}", f"tuner.workers={workers}", "confirm.top_k=0",
                                            *size, what=f"the {keras_backend} study with tuner.workers={workers}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # every process of the study (chief, workers, figure drawers) is a waited-for descendant
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    trials = frame[(frame["tags.kind"] == "trial") & (frame["status"] == "FINISHED")].sort_values("tags.trial_id")
    best = trials.loc[trials["metrics.val_auc"].idxmax()]
    search_s = trials["end_time"].max().timestamp() - trials["start_time"].min().timestamp()
    params = sorted(c for c in trials.columns if c.startswith("params."))
    return {"wall_s": wall, "trials": len(trials), "trials_per_hour": len(trials) / wall * 3600,
            "cpu_s": cpu, "cores_busy": cpu / wall, "search_s": search_s,
            "search_trials_per_hour": len(trials) / search_s * 3600,
            # from the study's start (its parent run) to the end of its best trial
            "time_to_best_s": best["end_time"].timestamp() - parent.info.start_time / 1000,
            "trial_seconds": float(trials["metrics.trial_seconds"].sum()),
            "best_val_auc": float(best["metrics.val_auc"]), "configs": trials[params].astype(str).to_dict("records")}


def run(quick: bool, store: Path) -> Result:
    out = {v: _study(quick, store, *v) for v in VARIANTS}
    for v in VARIANTS[1:]:
        if out[v]["configs"] != out[VARIANTS[0]]["configs"]:
            raise RuntimeError(f"backend={v[0]} tuner.workers={v[1]} ran other trial configs than one process did")
    n = out[VARIANTS[0]]["trials"]
    table = Table(f"The default digits study, random tuner, {n} trials (the same configs in each row), "
                  f"{os.cpu_count()} cores; wall time from process start to exit",
                  ["backend", "tuner.workers", "wall (s)", "trials per hour", "time to best val_auc (s)",
                   "trial time (s, sum)", "best val_auc", "× 1 worker", "search phase (s)", "× 1 worker, search phase",
                   "CPU (s)", "cores busy"])
    labels = {0: "0 (one process)", 1: "1 (chief + 1 worker)", 2: "2 (chief + 2 workers)"}
    for b, w in VARIANTS:
        r = out[b, w]
        table.rows.append([b, labels[w], round(r["wall_s"], 1), round(r["trials_per_hour"]), round(r["time_to_best_s"], 1),
                           round(r["trial_seconds"], 1), round(r["best_val_auc"], 4),
                           round(r["trials_per_hour"] / out[b, 1]["trials_per_hour"], 2), round(r["search_s"], 1),
                           round(r["search_trials_per_hour"] / out[b, 1]["search_trials_per_hour"], 2),
                           round(r["cpu_s"]), round(r["cores_busy"], 2)])
    data = {f"{b}-{w}": {k: v for k, v in r.items() if k != "configs"} for (b, w), r in out.items()}
    result = Result("parallel", quick, "", [table], data=data)
    for b in ("tensorflow", "jax"):
        gain = out[b, 2]["trials_per_hour"] / out[b, 1]["trials_per_hour"]
        result.targets.append(Target(f"2 local workers: ≥ 1.5× the trials per hour of 1 worker ({b})", f"{gain:.2f}×",
                                     gain >= 1.5))
    slow = {b: out[b, 2]["trial_seconds"] / out[b, 1]["trial_seconds"] for b in ("tensorflow", "jax")}
    result.notes.append("trial time (sum) is each trial's own `trial_seconds`: with 2 workers on 2 cores each trial "
                        "gets one core (tuner.distributed.threads = cores // workers; on JAX one XLA thread), so a "
                        "trial takes longer while two run at once: here "
                        + ", ".join(f"{slow[b]:.2f}× the 1-worker sum on {b} (a cap of {2 / slow[b]:.2f}×)" for b in slow)
                        + " before any fixed cost; the wall time also pays the processes' start "
                        "(workers start while the chief runs its baselines) and the chief's finish (best model, "
                        "test scoring, figures) once, and the last trial may run alone.")
    result.notes.append(bound_note(data, os.cpu_count() or 1))
    return result


def bound_note(data: dict[str, dict[str, float]], cores: int) -> str:
    """What the CPU allows: a study's wall time is at least its CPU seconds over the cores, so 2 workers'
    gain over 1 is at most the 1-worker wall over (2 workers' CPU / cores), both cores busy from start to exit."""
    def per_backend(b: str) -> str:
        one, two = data[f"{b}-1"], data[f"{b}-2"]
        return (f"{b}: 1 worker {one['cpu_s']:.0f} CPU s in {one['wall_s']:.1f} s ({one['cores_busy']:.2f} cores busy), "
                f"2 workers {two['cpu_s']:.0f} CPU s ({two['cores_busy']:.2f} busy), so at most "
                f"{one['wall_s'] / (two['cpu_s'] / cores):.2f}×; 1.5× needs 2 workers to spend at most "
                f"{cores * one['wall_s'] / 1.5:.0f} CPU s")
    return ("search phase: from the first trial's start to the last trial's end (a long study's rate: its start and "
            "finish are paid once). CPU: seconds of every process of the study (chief, workers, figure drawers); "
            "cores busy = CPU / wall. A study cannot end sooner than its CPU seconds over the "
            f"{cores} cores: " + "; ".join(per_backend(b) for b in ("tensorflow", "jax")) + ".")
