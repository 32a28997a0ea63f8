"""How training pairs reach ``model.fit``: whole arrays, or batches gathered from one buffer.

Arrays are copied once into tensors and fed by a repeating tf.data pipeline on TensorFlow (on JAX,
Keras' own array feed, which has no per-epoch rebuild cost there): fastest for small tables, but a
second copy of the features. :class:`PairBatches` hands Keras one batch at a time, gathered
from the arrays the data layer holds, so a large table is held once.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from siamese.backend import running
from siamese.data import PairSet
from siamese.errors import ConfigError

FEEDS = ("auto", "arrays", "batches")
AUTO_BATCHES_BYTES = 256 * 2**20  # above this many bytes of training features, feed batches


class PairBatches(keras.utils.PyDataset):
    """Shuffled batches of ``((left, right), y)``; with ``swap`` every pair also appears swapped."""

    def __init__(self, pairs: PairSet, batch_size: int, seed: int, swap: bool = False) -> None:
        super().__init__()
        self.pairs, self.batch_size, self.swap = pairs, int(batch_size), swap
        self.n = len(pairs) * (2 if swap else 1)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(self.n)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __getitem__(self, i: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        # Sorted indices read the buffer in order; the batch's order does not matter to the step.
        idx = np.sort(self.order[i * self.batch_size : (i + 1) * self.batch_size])
        rows = idx % len(self.pairs)
        left, right = self.pairs.left[rows], self.pairs.right[rows]
        if self.swap:
            flip = idx >= len(self.pairs)
            left[flip], right[flip] = right[flip], left[flip]
        return (left, right), self.pairs.y[rows]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(self.n)


def choose(feed: str, pairs: PairSet) -> str:
    """``arrays`` or ``batches`` for a ``training.feed`` setting and the training pairs."""
    if feed not in FEEDS:
        raise ConfigError(f"training.feed={feed!r} is not one of {list(FEEDS)}")
    if feed != "auto":
        return feed
    return "batches" if pairs.left.nbytes + pairs.right.nbytes > AUTO_BATCHES_BYTES else "arrays"


def fit_inputs(feed: str, pairs: PairSet, batch_size: int, seed: int, swap: bool) -> dict[str, Any]:
    """Keyword arguments for ``model.fit`` that feed ``pairs`` the chosen way."""
    if choose(feed, pairs) == "batches":
        return {"x": PairBatches(pairs, batch_size, seed, swap), "shuffle": False}  # it shuffles itself
    train = pairs.concat(pairs.swapped()) if swap else pairs
    if running() != "tensorflow":
        return {"x": [train.left, train.right], "y": train.y, "batch_size": batch_size, "shuffle": True}
    return {"x": _tf_batches(train, batch_size, seed), "steps_per_epoch": math.ceil(len(train) / batch_size),
            "shuffle": False}  # the pipeline shuffles


def _tf_batches(pairs: PairSet, batch_size: int, seed: int) -> Any:
    """A repeating tf.data pipeline over tensors copied once: shuffled indices, gathered per batch.

    Measured on the question-shaped table (1,000 training pairs, batch 256): Keras' own array
    adapter rebuilds its iterator every epoch, which cost more than the epoch's four steps.
    """
    import tensorflow as tf

    left, right, y = (tf.constant(np.ascontiguousarray(a)) for a in (pairs.left, pairs.right, pairs.y))

    def gather(idx: tf.Tensor) -> tuple[tuple[tf.Tensor, tf.Tensor], tf.Tensor]:
        return (tf.gather(left, idx), tf.gather(right, idx)), tf.gather(y, idx)

    order = tf.data.Dataset.range(len(pairs)).shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
    return order.batch(batch_size).map(gather).repeat().prefetch(tf.data.AUTOTUNE)
