"""Training speed of the question's model: this package's trainer against the question's script as
written (Keras 3 port), side by side in one run on a question-shaped synthetic table, plus the share
of this machine's dense matrix-multiply rate that training reaches."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks import question_script, synthetic
from benchmarks.common import CACHE, Result, Table, Target, compose_cfg
from siamese.data import load_dataset
from siamese.model import scores
from siamese.engine import RunSpec, fit

# Our variants: the question's model and loss throughout (experiment=question), with levers.
VARIANTS: dict[str, list[str]] = {
    "siamese, question settings (batch 32)": [],
    "batch 256": ["training.batch_size=256"],
    "batch 256, steps_per_execution 8": ["training.batch_size=256", "training.steps_per_execution=8"],
    "batch 256, steps_per_execution 8, XLA": ["training.batch_size=256", "training.steps_per_execution=8",
                                              "training.jit_compile=true"],
    "batch 256, batch feed": ["training.batch_size=256", "training.feed=batches"],
}


def dense_flops_per_pair(model: Any) -> float:
    """Training FLOPs per pair: 2 FLOPs per multiply-add, both towers, forward + backward ≈ 3 × forward."""
    macs = sum(int(np.prod(w.shape)) for w in model.weights if w.path.endswith("kernel"))
    return 2.0 * 2 * macs * 3  # the encoder's kernels serve both sides


def matmul_rate(batch: int, width: int, seconds: float = 1.0) -> float:
    """FLOP/s of chained (batch × width) @ (width × width) float32 products in TensorFlow."""
    import tensorflow as tf

    x = tf.random.normal((batch, width))
    w = tf.random.normal((width, width)) / np.sqrt(width)

    @tf.function
    def chain(x: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
        for _ in tf.range(n):
            x = tf.matmul(x, w)
        return x

    chain(x, tf.constant(10)).numpy()
    n = 10
    while True:
        t0 = time.perf_counter()
        chain(x, tf.constant(n)).numpy()
        took = time.perf_counter() - t0
        if took > seconds / 4:
            return 2.0 * batch * width * width * n / took
        n *= 4


def run(quick: bool, store: Path) -> Result:
    n, d = (400, 50) if quick else (2000, 200)
    seeds = [0] if quick else [0, 1, 2]
    epochs = 5 if quick else 100
    rows: dict[str, list[dict[str, float]]] = {}
    path = synthetic.write(CACHE / "speed" / f"question-shaped-{n}x{d}.csv", n, d, seed=0)
    frame = synthetic.frame(n, d, seed=0)
    n_train = n // 2
    flops = 0.0
    for seed in seeds:
        import keras

        keras.utils.set_random_seed(seed)
        t0 = time.perf_counter()
        model, history, (left, right, y) = question_script.run(frame, epochs=epochs)
        took = time.perf_counter() - t0
        auc = roc_auc_score(y, -model.predict([left, right], verbose=0).ravel())
        rows.setdefault("question's script (Keras 3 port)", []).append(
            {"seconds": took, "epochs": len(history.history["loss"]), "val_auc": auc})
        for name, overrides in VARIANTS.items():
            cfg = compose_cfg("train", store, "data=csv", f"data.train={path}", f"data.test={path}", "experiment=question",
                              f"seed={seed}", f"training.epochs={epochs}", "training.verbose=0", *overrides)
            data = load_dataset(cfg.data, seed)
            t0 = time.perf_counter()
            fitted = fit(RunSpec.of(cfg), data)
            model, kind, history = fitted.model, fitted.kind, fitted.history
            took = time.perf_counter() - t0
            out = model.predict([data.val.left, data.val.right], verbose=0)
            rows.setdefault(name, []).append({"seconds": took, "epochs": len(history["loss"]),
                                              "val_auc": roc_auc_score(data.val.y, scores(out, kind))})
            flops = dense_flops_per_pair(model)
    summary = {}
    for name, runs in rows.items():
        pairs = [n_train * r["epochs"] / r["seconds"] for r in runs]
        summary[name] = {"pairs_per_s": statistics.mean(pairs), "s_per_epoch": statistics.mean(r["seconds"] / r["epochs"] for r in runs),
                         "epochs": statistics.mean(r["epochs"] for r in runs), "val_auc": statistics.mean(r["val_auc"] for r in runs)}
    ref = summary["question's script (Keras 3 port)"]
    rate = {b: matmul_rate(b, 128) for b in (32, 256)}
    table = Table(f"Question-shaped table: {n} pairs ({n_train} train / {n - n_train} validation, the script's split), "
                  f"{d} a side; mean of {len(seeds)} seed(s), training wall time incl. build and compile",
                  ["trainer", "pairs/s", "× script", "s/epoch", "epochs", "val AUC", "Δ AUC", "% of matmul rate"])
    for name, m in summary.items():
        batch = 32 if "32" in name or "script" in name else 256
        share = 100.0 * m["pairs_per_s"] * flops / rate[batch]
        table.rows.append([name, round(m["pairs_per_s"]), round(m["pairs_per_s"] / ref["pairs_per_s"], 2),
                           round(m["s_per_epoch"], 4), round(m["epochs"], 1), round(m["val_auc"], 4),
                           round(m["val_auc"] - ref["val_auc"], 4), round(share, 2)])
    ok = {k: v for k, v in summary.items() if k != "question's script (Keras 3 port)" and v["val_auc"] >= ref["val_auc"] - 0.005}
    best = max(ok, key=lambda k: ok[k]["pairs_per_s"]) if ok else max(
        (k for k in summary if "script" not in k), key=lambda k: summary[k]["pairs_per_s"])
    ratio = summary[best]["pairs_per_s"] / ref["pairs_per_s"]
    result = Result("speed", quick, "", [table], data={"summary": summary, "matmul_flops": rate, "train_flops_per_pair": flops})
    result.targets.append(Target(
        "one trial trains at ≥ 3× the script's pairs/s, val AUC ≤ 0.005 below it",
        f"{ratio:.2f}× ({best}), val AUC {summary[best]['val_auc']:.4f} vs {ref['val_auc']:.4f}",
        ratio >= 3 and best in ok))
    result.notes.append(f"matmul rate at width 128: {rate[32] / 1e9:.1f} GFLOP/s (batch 32), {rate[256] / 1e9:.1f} GFLOP/s "
                        f"(batch 256); training counted at {flops / 1e6:.2f} MFLOP per pair (dense layers, ×3 for backward)")
    return result
