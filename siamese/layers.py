"""The model's custom layers, registered so a saved ``.keras`` file loads in Keras safe mode.

This module imports nothing but Keras: ``siamese.export`` copies it beside an exported model as
``siamese_layers.py``, so plain Keras can load that model without this package or MLflow.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="siamese")
class L2Normalize(layers.Layer):
    """Scale each row to unit length."""

    def call(self, x: Any) -> Any:
        return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


@keras.saving.register_keras_serializable(package="siamese")
class PairFeatures(layers.Layer):
    """Symmetric features of two embeddings: f(u, v) == f(v, u).

    ``l1``: |u−v|; ``l2``: (u−v)²; ``cosine``: cos(u, v) (one feature); ``learned``: the
    ``features`` side by side, from ``sum`` (u+v), ``absdiff`` (|u−v|) and ``product`` (u⊙v);
    by default [|u−v|, u⊙v].
    """

    PARTS = {"sum": lambda u, v: u + v, "absdiff": lambda u, v: ops.abs(u - v), "product": lambda u, v: u * v}

    def __init__(self, mode: str = "l2", features: tuple[str, ...] | list[str] = ("absdiff", "product"),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.features = tuple(features)

    def call(self, inputs: Any) -> Any:
        u, v = inputs
        if self.mode == "l1":
            return ops.abs(u - v)
        if self.mode == "l2":
            return ops.square(u - v)
        if self.mode == "cosine":
            norm = L2Normalize()
            return ops.sum(norm(u) * norm(v), axis=-1, keepdims=True)
        return ops.concatenate([self.PARTS[f](u, v) for f in self.features], axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "features": list(self.features)}


@keras.saving.register_keras_serializable(package="siamese")
class Distance(layers.Layer):
    """Reduce :class:`PairFeatures` to one distance: L1 sum, Euclidean, or 1 − cosine."""

    def __init__(self, mode: str = "l2", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, features: Any) -> Any:
        if self.mode == "l1":
            return ops.sum(features, axis=-1, keepdims=True)
        if self.mode == "l2":
            # The question's sqrt(max(sum, eps)): finite gradient at d = 0.
            return ops.sqrt(ops.maximum(ops.sum(features, axis=-1, keepdims=True), 1e-7))
        return 1.0 - features

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}
