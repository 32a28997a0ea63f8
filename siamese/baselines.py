"""What a user would run instead of a Siamese network, scored with the same metric names."""

from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from siamese.data import Dataset, PairSet
from siamese.metrics import choose_thresholds, evaluate


def cosine_scores(pairs: PairSet) -> np.ndarray:
    """Cosine similarity of the two sides (no training)."""
    num = np.sum(pairs.left * pairs.right, axis=1, dtype=np.float64)
    den = np.linalg.norm(pairs.left, axis=1) * np.linalg.norm(pairs.right, axis=1)
    return num / np.maximum(den, 1e-12)


def pair_features(pairs: PairSet) -> np.ndarray:
    """[|u−v|, u⊙v]: symmetric features for a linear model."""
    return np.hstack([np.abs(pairs.left - pairs.right), pairs.left * pairs.right])


def logistic(data: Dataset, c: float = 0.1) -> Callable[[PairSet], np.ndarray]:
    """Standardised logistic regression on :func:`pair_features`, fit on the training split."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    model.fit(pair_features(data.train), data.train.y)
    return lambda pairs: model.decision_function(pair_features(pairs))


def majority(data: Dataset) -> Callable[[PairSet], np.ndarray]:
    """Every pair gets the training split's majority class (a constant score)."""
    value = 1.0 if data.train.y.mean() >= 0.5 else -1.0
    return lambda pairs: np.full(len(pairs), value)


BASELINES: dict[str, Callable[[Dataset], Callable[[PairSet], np.ndarray]]] = {
    "cosine": lambda data: cosine_scores,
    "logistic": logistic,
}


def score_baseline(scorer: Callable[[PairSet], np.ndarray], data: Dataset) -> dict[str, float]:
    """Thresholds chosen on validation; validation and test metrics with them."""
    s_val = scorer(data.val)
    chosen = choose_thresholds(data.val.y, s_val)
    metrics = {f"val_{k}": v for k, v in chosen.items()}
    metrics.update(evaluate(data.val.y, s_val, "val", chosen["threshold"], chosen["f1_threshold"]))
    metrics.update(evaluate(data.test.y, scorer(data.test), "test", chosen["threshold"], chosen["f1_threshold"]))
    return metrics
