"""Train one Siamese model from a config, evaluate it honestly, and record it in MLflow.

    python -m siamese.train [overrides]        # one run
    python -m siamese.train -m a=1,2 b=x,y     # one run per combination, same store
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
from omegaconf import DictConfig

from siamese import feed, tracking
from siamese.bundle import ModelBundle
from siamese.data import Dataset, load_dataset
from siamese.errors import ConfigError
from siamese.figures import FigureJob, Figures
from siamese.losses import fixed_rule
from siamese.metrics import auc, choose_thresholds
from siamese.model import build_model, compile_model, output_kind, outputs, scores

MONITORS = {"val_loss": "min", "val_acc": "max", "val_auc_epoch": "max", "loss": "min"}


class Diverged(RuntimeError):
    """Training produced a NaN or infinite loss."""


class EpochValidation(keras.callbacks.Callback):
    """One validation pass per epoch: ``val_loss``, ``val_acc`` and ``val_auc_epoch`` from a single
    set of predictions (Keras' own validation would be a second pass), written into the epoch's logs
    before early stopping reads them. Raises :class:`Diverged` on a non-finite loss, so a diverged
    run never passes as finished."""

    # Loss over chunks of this many pairs (matters only for online_contrastive's hard pairs).
    CHUNK = 4096

    def __init__(self, data: Dataset, kind: str) -> None:
        super().__init__()
        self.data, self.kind = data, kind

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs if logs is not None else {}
        loss = logs.get("loss", 0.0)
        if not math.isfinite(loss):
            raise Diverged(f"training diverged: loss is {loss} at epoch {epoch + 1}")
        val = self.data.val
        out = outputs(self.model, val.left, val.right).astype(np.float32)
        parts = [(float(self.model.loss(val.y[i : i + self.CHUNK], out[i : i + self.CHUNK])), len(out[i : i + self.CHUNK]))
                 for i in range(0, len(out), self.CHUNK)]
        logs["val_loss"] = sum(v * n for v, n in parts) / len(out)
        logs["val_acc"] = float(np.mean(fixed_rule(out, self.kind) == (val.y > 0.5)))
        s = scores(out, self.kind)
        if np.all(np.isfinite(s)):
            logs["val_auc_epoch"] = auc(val.y, s)


def fit(cfg: DictConfig, data: Dataset, callbacks: list[keras.callbacks.Callback] | None = None) -> tuple[keras.Model, str, dict[str, list[float]]]:
    """Build, compile and fit the model a config describes.

    Returns:
        The fitted model (best epoch's weights when early stopping restores them), its output
        kind, and the per-epoch history.
    """
    keras.utils.set_random_seed(int(cfg.seed))
    kind = output_kind(cfg.model, cfg.loss.name)
    model = build_model(data.train.dim, cfg.model, cfg.loss.name)
    compile_model(model, cfg, kind)
    inputs = feed.fit_inputs(cfg.training.feed, data.train, int(cfg.training.batch_size),
                             int(cfg.seed), bool(cfg.training.swap_augment))
    run_callbacks: list[keras.callbacks.Callback] = [EpochValidation(data, kind)]
    stop = cfg.training.early_stopping
    if stop.patience is not None:
        if stop.monitor not in MONITORS:
            raise ConfigError(f"training.early_stopping.monitor={stop.monitor!r} is not one of {list(MONITORS)}")
        run_callbacks.append(keras.callbacks.EarlyStopping(
            monitor=stop.monitor, mode=MONITORS[stop.monitor], patience=int(stop.patience),
            restore_best_weights=bool(stop.restore_best)))
    try:
        history = model.fit(
            **inputs, epochs=int(cfg.training.epochs), verbose=int(cfg.training.verbose),
            callbacks=run_callbacks + list(callbacks or []),
        )
    finally:  # a failed fit still writes the curves it has (see tracking.EpochLogger)
        for cb in callbacks or []:
            if hasattr(cb, "flush"):
                cb.flush()
    return model, kind, {k: [float(x) for x in v] for k, v in history.history.items()}


def assess(model: keras.Model, kind: str, data: Dataset, with_test: bool = True) -> tuple[ModelBundle, dict[str, float], dict[str, Any]]:
    """Choose thresholds on validation, then compute validation (and test) metrics with them.

    Returns:
        The bundle (model + preprocessing + thresholds), the metrics, and per split the labels,
        scores and model outputs.
    """
    out: dict[str, Any] = {}
    bundle = ModelBundle(model, data.preprocessor, kind, 0.0, 0.0, data.columns.to_dict())
    splits = {"val": data.val, "test": data.test} if with_test else {"val": data.val}
    for name, pairs in splits.items():
        raw = bundle.raw(pairs)
        out[name] = (pairs.y, scores(raw, kind), raw)
    y_val, s_val, _ = out["val"]
    if not np.all(np.isfinite(s_val)):
        raise Diverged("the model's validation scores are NaN or infinite")
    chosen = choose_thresholds(y_val, s_val)
    bundle.threshold, bundle.f1_threshold = chosen["threshold"], chosen["f1_threshold"]
    metrics = {f"val_{k}": v for k, v in chosen.items()}
    for name, (y, _, raw) in out.items():
        metrics.update(bundle.metrics(y, raw, name))
    return bundle, metrics, out


def record(bundle: ModelBundle, metrics: dict[str, float], history: dict[str, list[float]], split_scores: dict[str, Any],
           log_model: bool = True, figures: Figures | None = None) -> None:
    """Log final metrics, the validation figures and (optionally) the model to the active run.

    ``figures`` says where the figures are drawn (default: here, now); the learning curves are
    drawn only when there is a ``history``.
    """
    mlflow.log_metrics(metrics)
    job = FigureJob(mlflow.active_run().info.run_id, history, {k: (v[0], v[1]) for k, v in split_scores.items()},
                    bundle.threshold)
    (figures or Figures()).add(job)
    if log_model:
        with tracking.scratch_dir() as tmp:
            tracking.log_dir(bundle.save(Path(tmp) / "model"), "model")


def start(cfg: DictConfig) -> Dataset:
    """Checks that must pass before a run is opened: config combination, tracking store, data."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")
    output_kind(cfg.model, cfg.loss.name)
    tracking.configure(cfg.tracking)
    return load_dataset(cfg.data, int(cfg.seed))


def train(cfg: DictConfig) -> dict[str, float]:
    """Train one model from ``cfg`` and record it as one MLflow run.

    Returns:
        Final validation and test metrics (test uses thresholds chosen on validation).
    """
    data = start(cfg)
    tags = tracking.reproducibility_tags(int(cfg.seed), data.hashes, data.files)
    with tracking.run(cfg.tracking.experiment, cfg.tracking.artifact_root, cfg.get("run_name"), tags={**tags, "kind": "train"}):
        tracking.log_config(cfg)
        t0 = time.perf_counter()
        model, kind, history = fit(cfg, data, [tracking.EpochLogger()])
        bundle, metrics, split_scores = assess(model, kind, data)
        metrics["train_seconds"] = time.perf_counter() - t0
        metrics["epochs_run"] = float(len(history.get("loss", [])))
        record(bundle, metrics, history, split_scores, bool(cfg.tracking.log_model))
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith(("val_auc", "val_accuracy", "test_auc", "test_accuracy"))))
    return metrics


if __name__ == "__main__":
    from siamese.cli import entry

    entry(train, "train")()
