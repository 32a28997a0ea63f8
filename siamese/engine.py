"""The training engine: one model from a run spec through fit → assess → record.

``siamese.train`` (one run) and ``siamese.study`` (a trial, a best model) both use it:

    spec = RunSpec.of(cfg)                  # every check, the output kind decided once
    fitted = fit(spec, data, callbacks)     # Fitted(model, kind, history)
    result = assess(fitted, data)           # Assessment(bundle, metrics, curves)
    record(result, fitted.history, …)       # metrics, figures, model → the active MLflow run

Thresholds are chosen on validation only; test metrics reuse them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from siamese import feed, stops, tracking
from siamese.bundle import ModelBundle
from siamese.checks import MONITORS, check_config
from siamese.data import Dataset, load_dataset
from siamese.data.implied import implied_note, implied_pairs
from siamese.errors import ConfigError, TrainingFailed
from siamese.figures import FigureJob, Figures
from siamese.losses import fixed_rule
from siamese.metrics import auc, choose_thresholds
from siamese.model import SCHEDULES, build_model, compile_model, output_kind, outputs, schedule_callbacks, scores

class Diverged(TrainingFailed):
    """Training produced a NaN or infinite loss, or non-finite scores."""


def divergence_hint(data: Dataset, learning_rate: float | None = None) -> str:
    """What to try after a divergence: ``" (features up to 1e18; try data.preprocess=standardize)"``
    when unscaled features are large, else a lower learning rate."""
    if data.preprocessor.kind == "none" and data.feature_scale > 10:
        mantissa, exponent = f"{data.feature_scale:.1e}".split("e")
        shown = f"{mantissa.removesuffix('.0')}e{int(exponent)}" if data.feature_scale >= 1e4 else f"{data.feature_scale:.4g}"
        return f" (features up to {shown}; try data.preprocess=standardize)"
    if learning_rate is not None:
        return f" (try a lower optimizer.learning_rate, now {learning_rate:g})"
    return ""


@dataclass(frozen=True)
class RunSpec:
    """A run config checked once, with what the checks decided.

    Attributes:
        cfg: the full run config (``model``, ``loss``, ``optimizer``, ``training``, ``seed``, …).
        kind: the model's output: ``distance``, ``logit`` or ``probability``.
        seed: the run's seed.
    """

    cfg: DictConfig
    kind: str
    seed: int

    @classmethod
    def of(cls, cfg: DictConfig) -> "RunSpec":
        """Check a run config before anything is opened or trained.

        Raises:
            ConfigError: a bad seed, a setting out of range (:func:`siamese.checks.check_config`:
                epochs, batch size, learning rate, margins, dropout, …), or a model/loss combination.
        """
        if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
            raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")
        check_config(cfg)
        kind = output_kind(cfg.model, cfg.loss.name)
        if cfg.optimizer.get("schedule", "constant") not in SCHEDULES:
            raise ConfigError(f"optimizer.schedule={cfg.optimizer.schedule!r} is not one of {list(SCHEDULES)}")
        smoothing = float(cfg.loss.get("label_smoothing") or 0.0)
        if not 0.0 <= smoothing < 1.0 or (smoothing and cfg.loss.name != "bce"):
            raise ConfigError(f"loss.label_smoothing={smoothing} must be in [0, 1), and applies to loss=bce only")
        return cls(cfg, kind, int(cfg.seed))


@dataclass
class Fitted:
    """A fitted model (best epoch's weights when early stopping restores them) and its curves."""

    model: keras.Model
    kind: str
    history: dict[str, list[float]] = field(default_factory=dict)
    mined: int = 0  # training pairs added by training.implied_pairs


@dataclass
class Curves:
    """One split's labels, scores (higher = more similar) and raw model outputs, each (n,)."""

    y: np.ndarray
    scores: np.ndarray
    raw: np.ndarray


@dataclass
class Assessment:
    """A model with its validation-chosen thresholds, its metrics, and the curves they came from."""

    bundle: ModelBundle
    metrics: dict[str, float]
    curves: dict[str, Curves]


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
        stops.check()  # a stop swallowed during the epoch is raised here
        logs = logs if logs is not None else {}
        loss = logs.get("loss", 0.0)
        if not math.isfinite(loss):
            rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            raise Diverged(f"training diverged: loss is {loss} at epoch {epoch + 1}{divergence_hint(self.data, rate)}")
        val = self.data.val
        out = outputs(self.model, val.left, val.right).astype(np.float32)
        parts = [(float(self.model.loss(val.y[i : i + self.CHUNK], out[i : i + self.CHUNK])), len(out[i : i + self.CHUNK]))
                 for i in range(0, len(out), self.CHUNK)]
        logs["val_loss"] = sum(v * n for v, n in parts) / len(out)
        logs["val_acc"] = float(np.mean(fixed_rule(out, self.kind) == (val.y > 0.5)))
        s = scores(out, self.kind)
        if np.all(np.isfinite(s)):
            logs["val_auc_epoch"] = auc(val.y, s)
        stops.check()  # the validation pass traces Keras' predict step, where a stop can be swallowed


class EpochLogger(keras.callbacks.Callback):
    """Every epoch's metrics to the active MLflow run with ``step`` = epoch (from 0).

    Buffered and written in one batch every ``every_s`` seconds and at the end: one store write per
    epoch cost 0.2 s of a 25-epoch trial. ``flush`` is also called when training fails, so a
    FAILED run keeps its curves up to the failure.
    """

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self.every_s, self.pending, self.last = every_s, [], time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        now = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now, epoch) for k, v in (logs or {}).items()]
        if time.monotonic() - self.last >= self.every_s:
            self.flush()

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        self.flush()

    def flush(self) -> None:
        """Write what is buffered to the active run."""
        if self.pending and mlflow.active_run():
            MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=self.pending)
        self.pending, self.last = [], time.monotonic()


def fit(spec: RunSpec, data: Dataset, callbacks: list[keras.callbacks.Callback] | None = None) -> Fitted:
    """Build, compile and fit the model a spec describes, on ``data.train``, validating on ``data.val``.

    Raises:
        Diverged: the training loss became NaN or infinite.
    """
    cfg = spec.cfg
    keras.utils.set_random_seed(spec.seed)
    model = build_model(data.train.dim, cfg.model, spec.kind)
    compile_model(model, cfg, spec.kind)
    train, mined = data.train, None
    ratio = float(cfg.training.get("implied_pairs") or 0.0)
    if ratio:  # the training labels' closure adds pairs (siamese.data.implied); validation stays as it is
        mined = implied_pairs(train, ratio, spec.seed, exclude=(data.val, data.test))
        train = train.concat(mined)
    inputs = feed.fit_inputs(cfg.training.feed, train, int(cfg.training.batch_size), spec.seed,
                             bool(cfg.training.swap_augment))
    run_callbacks: list[keras.callbacks.Callback] = [EpochValidation(data, spec.kind)]
    stop = cfg.training.early_stopping
    if stop.patience is not None:
        run_callbacks.append(keras.callbacks.EarlyStopping(
            monitor=stop.monitor, mode=MONITORS[stop.monitor], patience=int(stop.patience),
            restore_best_weights=bool(stop.restore_best)))
    run_callbacks += schedule_callbacks(cfg)  # after EpochValidation, which writes val_loss
    try:
        history = model.fit(**inputs, epochs=int(cfg.training.epochs), verbose=int(cfg.training.verbose),
                            callbacks=run_callbacks + list(callbacks or []))
    finally:  # a failed fit still writes the curves it has (see EpochLogger)
        for cb in callbacks or []:
            if hasattr(cb, "flush"):
                cb.flush()
    return Fitted(model, spec.kind, {k: [float(x) for x in v] for k, v in history.history.items()},
                  0 if mined is None else len(mined))


def assess(fitted: Fitted, data: Dataset, with_test: bool = True) -> Assessment:
    """Choose thresholds on validation, then compute validation (and test) metrics with them.

    Raises:
        Diverged: the validation scores are NaN or infinite.
    """
    splits = {"val": data.val, "test": data.test} if with_test else {"val": data.val}
    curves = {}
    for name, pairs in splits.items():
        raw = outputs(fitted.model, pairs.left, pairs.right)
        curves[name] = Curves(pairs.y, scores(raw, fitted.kind), raw)
    val = curves["val"]
    if not np.all(np.isfinite(val.scores)):
        raise Diverged(f"training diverged: the model's validation scores are NaN or infinite{divergence_hint(data)}")
    chosen = choose_thresholds(val.y, val.scores)
    bundle = ModelBundle(fitted.model, data.preprocessor, fitted.kind, chosen["threshold"], chosen["f1_threshold"],
                         data.columns.to_dict())
    metrics = {f"val_{k}": v for k, v in chosen.items()}
    for name, c in curves.items():
        metrics.update(bundle.metrics(c.y, c.raw, name))
    return Assessment(bundle, metrics, curves)


def record(result: Assessment, history: dict[str, list[float]], log_model: bool = True,
           figures: Figures | None = None) -> None:
    """Log final metrics, the figures and (optionally) the model to the active run.

    ``figures`` says where the figures are drawn (default: here, now); the learning curves are
    drawn only when there is a ``history``.
    """
    mlflow.log_metrics(result.metrics)
    job = FigureJob(mlflow.active_run().info.run_id, history,
                    {k: (c.y, c.scores) for k, c in result.curves.items()}, result.bundle.threshold)
    (figures or Figures()).add(job)
    if log_model:
        with tracking.scratch_dir() as tmp:
            tracking.log_dir(result.bundle.save(Path(tmp) / "model"), "model")


def train_and_record(spec: RunSpec, data: Dataset, with_test: bool, log_model: bool,
                     figures: Figures | None = None) -> Assessment:
    """Fit with per-epoch logging, assess, and record, in the active run.

    Adds ``train_seconds`` (fit and assessment), ``epochs_run``, ``implied_pairs_mined`` (with
    ``training.implied_pairs``) and the data's overlap counts
    (``test_pairs_seen_in_train``, ``val_pairs_seen_in_train``) to the metrics.
    """
    t0 = time.perf_counter()
    fitted = fit(spec, data, [EpochLogger()])
    result = assess(fitted, data, with_test=with_test)
    result.metrics["train_seconds"] = time.perf_counter() - t0
    result.metrics["epochs_run"] = float(len(fitted.history.get("loss", [])))
    if spec.cfg.training.get("implied_pairs"):  # how many the closure gave: none on a table without repeats
        result.metrics["implied_pairs_mined"] = float(fitted.mined)
    result.metrics.update(data.overlap)
    record(result, fitted.history, log_model, figures)
    return result


def prepare(cfg: DictConfig) -> tuple[RunSpec, tracking.Tracker, Dataset]:
    """Everything that must pass before a run is opened: the config, the tracking store, the data.

    Prints the data's notes once: the columns taken as left, right and label, columns dropped,
    a leakage warning, and how many pairs ``training.implied_pairs`` adds.
    """
    spec = RunSpec.of(cfg)
    tracker = tracking.Tracker(cfg.tracking)
    data = load_dataset(cfg.data, spec.seed)
    searched = "training.implied_pairs" in (OmegaConf.select(cfg, "search.params") or {})
    mined = implied_note(data.train, float(cfg.training.get("implied_pairs") or 0.0), searched)
    if mined:
        data.notes.append(mined)
    for note in data.notes:
        print(note, flush=True)
    return spec, tracker, data


def log_data(data: Dataset) -> None:
    """What the data became, to the active run: ``columns.json`` (left, right, label, ignored
    columns and the notes). The overlap counts are logged with each run's metrics."""
    mlflow.log_dict({**data.columns.to_dict(), "notes": data.notes}, "columns.json")


def describe(metrics: dict[str, Any]) -> str:
    """The headline metrics as one line (``val_auc=… val_accuracy=… test_auc=…``)."""
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items()
                    if k.startswith(("val_auc", "val_accuracy", "test_auc", "test_accuracy")))
