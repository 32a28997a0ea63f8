"""What a user would run instead of a Siamese network, scored with the same metric names.

A study's baselines are tuned like its trials: the logistic regression's ``C`` is chosen on the
validation split by the study's objective, from a log grid, so a study is judged against the best
simple model, not a fixed setting of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from siamese.data import Dataset, PairSet
from siamese.errors import ConfigError
from siamese.metrics import choose_thresholds, evaluate

Scorer = Callable[[PairSet], np.ndarray]
# What a baseline reports on validation; an objective only a network has (val_loss) cannot choose C.
_VAL_METRICS = ("val_auc", "val_ap", "val_accuracy", "val_f1", "val_mcc")


def cosine_scores(pairs: PairSet) -> np.ndarray:
    """Cosine similarity of the two sides (no training)."""
    num = np.sum(pairs.left * pairs.right, axis=1, dtype=np.float64)
    den = np.linalg.norm(pairs.left, axis=1) * np.linalg.norm(pairs.right, axis=1)
    return num / np.maximum(den, 1e-12)


# Symmetric pair features: each is the same for (u, v) and (v, u).
FEATURES: dict[str, Callable[[PairSet], np.ndarray]] = {
    "sum": lambda p: p.left + p.right,
    "absdiff": lambda p: np.abs(p.left - p.right),
    "product": lambda p: p.left * p.right,
    "cosine": lambda p: cosine_scores(p)[:, None],
}


def pair_features(pairs: PairSet, features: tuple[str, ...] = ("absdiff", "product")) -> np.ndarray:
    """The named symmetric features side by side (default [|u−v|, u⊙v]), float32."""
    return np.hstack([FEATURES[f](pairs).astype(np.float32) for f in features])


@dataclass(frozen=True)
class LogisticSettings:
    """The logistic baseline's features and its ``C`` grid (``logistic.*`` in ``conf/tune.yaml``)."""

    features: tuple[str, ...] = ("sum", "absdiff", "product", "cosine")
    c_grid: tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 0, 9))

    @classmethod
    def of(cls, cfg: Any) -> "LogisticSettings":
        """Read and check the ``logistic`` node (defaults when absent).

        Raises:
            ConfigError: an unknown feature, an empty list, or a ``C`` that is not a positive number.
        """
        if cfg is None:
            return cls()
        features = tuple(str(f) for f in cfg.get("features", cls.features))
        unknown = [f for f in features if f not in FEATURES]
        if not features or unknown:
            raise ConfigError(f"logistic.features={list(features)}: each must be one of {list(FEATURES)}, at least one")
        try:
            grid = tuple(float(c) for c in cfg.get("c_grid", cls.c_grid))
        except (TypeError, ValueError):
            raise ConfigError(f"logistic.c_grid must be a list of positive numbers, got {cfg.get('c_grid')}") from None
        if not grid or min(grid) <= 0:
            raise ConfigError(f"logistic.c_grid must be a non-empty list of positive numbers, got {list(grid)}")
        return cls(features, tuple(sorted(grid)))


def logistic(data: Dataset, c: float = 0.1, features: tuple[str, ...] = ("absdiff", "product")) -> Scorer:
    """Standardised logistic regression with a fixed ``C`` on :func:`pair_features`, fit on training."""
    scaler = StandardScaler().fit(pair_features(data.train, features))
    model = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(pair_features(data.train, features)), data.train.y)
    return lambda pairs: model.decision_function(scaler.transform(pair_features(pairs, features)))


def tuned_logistic(data: Dataset, settings: LogisticSettings, objective: str = "val_auc",
                   direction: str = "max") -> tuple[Scorer, dict[str, Any]]:
    """Standardised logistic regression fit on training, its ``C`` chosen on validation.

    Each ``C`` of the grid (smallest first, each fit starting from the last one's weights) is fit
    on the training split and scored on validation by ``objective`` (``val_auc`` when a baseline
    has no such metric); the best is kept.

    Returns:
        The chosen model's scorer, and its params: ``C``, ``features`` and the objective per ``C``.
    """
    scaler = StandardScaler().fit(pair_features(data.train, settings.features))
    x_train = scaler.transform(pair_features(data.train, settings.features))
    x_val = scaler.transform(pair_features(data.val, settings.features))
    model = LogisticRegression(max_iter=2000, warm_start=True)
    if objective not in _VAL_METRICS:
        objective, direction = "val_auc", "max"
    sign = 1.0 if direction == "max" else -1.0
    by_c: dict[float, float] = {}
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    for c in settings.c_grid:
        model.set_params(C=c).fit(x_train, data.train.y)
        s_val = model.decision_function(x_val)
        metrics = score_baseline(lambda pairs: s_val, data, with_test=False)
        value = metrics[objective]
        by_c[c] = value
        if best is None or sign * value > sign * best[1]:
            best = (c, value, model.coef_.copy(), model.intercept_.copy())
    c, _, coef, intercept = best
    model.set_params(C=c)
    model.coef_, model.intercept_ = coef, intercept
    scorer = lambda pairs: model.decision_function(scaler.transform(pair_features(pairs, settings.features)))  # noqa: E731
    return scorer, {"C": c, "features": ",".join(settings.features), "by_C": by_c}


def majority(data: Dataset) -> Scorer:
    """Every pair gets the training split's majority class (a constant score)."""
    value = 1.0 if data.train.y.mean() >= 0.5 else -1.0
    return lambda pairs: np.full(len(pairs), value)


def study_baselines(settings: LogisticSettings, objective: str, direction: str) -> dict[str, Callable[[Dataset], tuple[Scorer, dict[str, Any]]]]:
    """A study's baselines by name: each makes (scorer, params) from the data."""
    return {"cosine": lambda data: (cosine_scores, {}),
            "logistic": lambda data: tuned_logistic(data, settings, objective, direction)}


def score_baseline(scorer: Scorer, data: Dataset, with_test: bool = True) -> dict[str, float]:
    """Thresholds chosen on validation; validation (and test) metrics with them."""
    s_val = scorer(data.val)
    chosen = choose_thresholds(data.val.y, s_val)
    metrics = {f"val_{k}": v for k, v in chosen.items()}
    metrics.update(evaluate(data.val.y, s_val, "val", chosen["threshold"], chosen["f1_threshold"]))
    if with_test:
        metrics.update(evaluate(data.test.y, scorer(data.test), "test", chosen["threshold"], chosen["f1_threshold"]))
    return metrics
