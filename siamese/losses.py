"""Pair losses, written in ``keras.ops`` and registered so saved models load in safe mode.

Labels: 1 = same, 0 = different. Contrastive losses take a distance (lower = more similar);
binary cross-entropy takes a logit or a probability of "same".
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# What each loss needs the model to output: a distance, or a logit/probability of "same".
LOSS_TARGET = {"contrastive": "distance", "online_contrastive": "distance", "bce": "logit"}


def _flat(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    return ops.cast(ops.reshape(y_true, (-1,)), y_pred.dtype), ops.reshape(y_pred, (-1,))


@keras.saving.register_keras_serializable(package="siamese")
class ContrastiveLoss(keras.losses.Loss):
    """``y·d² + (1−y)·max(margin − d, 0)²`` (Hadsell et al. 2006), as in the question."""

    def __init__(self, margin: float = 1.0, name: str = "contrastive", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y, d = _flat(y_true, y_pred)
        return y * ops.square(d) + (1.0 - y) * ops.square(ops.relu(self.margin - d))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="siamese")
class OnlineContrastiveLoss(ContrastiveLoss):
    """Contrastive loss over the batch's hard pairs only.

    Hard positives are same-pairs farther apart than the closest different-pair; hard negatives
    are different-pairs closer than the farthest same-pair (as sentence-transformers'
    OnlineContrastiveLoss). Averaged over the hard pairs; zero when a batch has none.
    """

    def __init__(self, margin: float = 1.0, name: str = "online_contrastive", **kwargs: Any) -> None:
        super().__init__(margin=margin, name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y, d = _flat(y_true, y_pred)
        big = ops.cast(1e9, d.dtype)
        min_neg = ops.min(ops.where(y < 0.5, d, big))
        max_pos = ops.max(ops.where(y > 0.5, d, -big))
        hard_pos = ops.cast((y > 0.5) & (d > min_neg), d.dtype)
        hard_neg = ops.cast((y < 0.5) & (d < max_pos), d.dtype)
        per_pair = hard_pos * ops.square(d) + hard_neg * ops.square(ops.relu(self.margin - d))
        count = ops.maximum(ops.sum(hard_pos + hard_neg), 1.0)
        # Scaled so that the framework's mean over the batch gives the mean over hard pairs.
        return per_pair * ops.cast(ops.shape(d)[0], d.dtype) / count


def build_loss(cfg: Any, output_activation: str) -> keras.losses.Loss:
    """The loss a ``loss`` config names.

    Args:
        cfg: the ``loss`` config node (``name``, ``margin``, ``label_smoothing`` for BCE).
        output_activation: ``linear`` (BCE from logits) or ``sigmoid`` (BCE on probabilities).
    """
    if cfg.name == "contrastive":
        return ContrastiveLoss(cfg.margin)
    if cfg.name == "online_contrastive":
        return OnlineContrastiveLoss(cfg.margin)
    return keras.losses.BinaryCrossentropy(from_logits=output_activation == "linear", name="bce",
                                           label_smoothing=float(cfg.get("label_smoothing") or 0.0))


def fixed_rule(out: Any, kind: str, threshold: float = 0.5) -> Any:
    """The head's natural "same" rule, on NumPy arrays or backend tensors: ``distance`` d < threshold
    (the question's 0.5), ``logit`` z > 0, ``probability`` p > 0.5."""
    if kind == "distance":
        return out < threshold
    if kind == "logit":
        return out > 0.0
    return out > 0.5


@keras.saving.register_keras_serializable(package="siamese")
class PairAccuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy at the head's natural fixed rule, for per-epoch curves.

    ``distance``: same when d < threshold (the question's 0.5 rule); ``logit``: same when z > 0;
    ``probability``: same when p > 0.5. The reported accuracy uses a threshold chosen on
    validation instead (see :mod:`siamese.metrics`).
    """

    def __init__(self, kind: str = "distance", threshold: float = 0.5, name: str = "acc", **kwargs: Any) -> None:
        self.kind, self.threshold = kind, float(threshold)
        super().__init__(fn=self._accuracy, name=name, **kwargs)

    def _accuracy(self, y_true: Any, y_pred: Any) -> Any:
        y, s = _flat(y_true, y_pred)
        return ops.cast(ops.equal(y > 0.5, fixed_rule(s, self.kind, self.threshold)), s.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "threshold": self.threshold, "name": self.name, "dtype": self.dtype}
