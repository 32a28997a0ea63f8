"""Accuracy on the test set, mean ± sd over seeds: baselines, the question's model, the accepted fix,
and the best model of the default study at a fixed trial budget. Validation chooses everything."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import CACHE, Result, Table, Target, compose_cfg, mean_sd, shared_available, timer
from siamese.baselines import cosine_scores, logistic, majority, score_baseline
from siamese.data import load_dataset
from siamese.train import train
from siamese.tune import tune

METHODS = ["majority class", "cosine similarity", "logistic [abs(u−v), u⊙v]", "question's model",
           "accepted fix (L1 → Dense(1), BCE)", "default study, best model"]
BASELINES: dict[str, Callable[[Any], Callable]] = {
    "majority class": majority, "cosine similarity": lambda d: cosine_scores, "logistic [abs(u−v), u⊙v]": logistic}


def settings(quick: bool) -> dict[str, Any]:
    return {
        "datasets": ["digits"] + (["mrpc-minilm"] if shared_available("mrpc-minilm") and not quick else []),
        "seeds": [0, 1] if quick else [0, 1, 2],
        "budget": 2 if quick else 20,
        "small": ["++data.n_train=600", "++data.n_test=200", "training.epochs=3"] if quick else [],
        # Quick: confirmation of the best trial on two seeds (the path, not the figure).
        "study": ["confirm.top_k=1", "confirm.seeds=2"] if quick else [],
    }


def run(quick: bool, store: Path) -> Result:
    s = settings(quick)
    scores: dict[tuple[str, str], list[dict[str, float]]] = {}
    studies: dict[str, list[str]] = {}

    def add(data: str, method: str, metrics: dict[str, float], seconds: float) -> None:
        scores.setdefault((data, method), []).append({**metrics, "seconds": seconds})

    for data in s["datasets"]:
        for seed in s["seeds"]:
            common = [f"data={data}", f"seed={seed}", "training.verbose=0", *s["small"]]
            cfg = compose_cfg("train", store, *common)
            with timer() as t_load:
                dataset = load_dataset(cfg.data, seed)
            for method, make in BASELINES.items():
                with timer() as t:
                    metrics = score_baseline(make(dataset), dataset)
                add(data, method, metrics, t["s"] + t_load["s"])
            for method, preset in ((METHODS[3], "question"), (METHODS[4], "question_fix")):
                with timer() as t:
                    metrics = train(compose_cfg("train", store, *common, f"experiment={preset}"))
                add(data, method, metrics, t["s"])
            study_dir = CACHE / "studies" / f"accuracy-{data}-s{seed}"
            shutil.rmtree(study_dir, ignore_errors=True)
            with timer() as t:
                metrics = tune(compose_cfg("tune", store, *common, f"study=bench-{data}-s{seed}", f"study_dir={study_dir}",
                                           f"tuner.max_trials={s['budget']}", *s["study"]))
            add(data, METHODS[5], metrics, t["s"])
            studies.setdefault(data, []).append(f"bench-{data}-s{seed}")

    table = Table(f"Test set, mean ± sd over {len(s['seeds'])} seeds (thresholds chosen on validation)",
                  ["data", "method", "test accuracy", "test AUC", "test F1", "wall s"])
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for (data, method), runs in scores.items():
        row = {k: [r[k] for r in runs] for k in ("test_accuracy", "test_auc", "test_f1", "seconds")}
        summary.setdefault(data, {})[method] = {k: statistics.mean(v) for k, v in row.items()}
        table.rows.append([data, method, mean_sd(row["test_accuracy"]), mean_sd(row["test_auc"]),
                           mean_sd(row["test_f1"]), round(statistics.mean(row["seconds"]), 1)])
    result = Result("accuracy", quick, "", [table], data={"summary": summary, "studies": studies, "store": str(store),
                                                            "settings": {k: v for k, v in s.items()}})
    for data, rows in summary.items():
        best = rows[METHODS[5]]["test_accuracy"]
        others = {m: v["test_accuracy"] for m, v in rows.items() if m != METHODS[5]}
        top = max(others, key=others.get)
        result.targets.append(Target(
            f"{data}: the default study's best model ({s['budget']} trials) beats every other row's test accuracy",
            f"{best:.4f} vs best other {top} {others[top]:.4f}", best > others[top]))
    return result
