"""Vector identity: one id per vector, equal exactly when the vectors are equal.

Leakage checks count test pairs whose two sides both appear in training and validation pairs
that repeat a training pair; a grouped split keeps every pair holding one vector on one side
of the cut. Both need the same notion of "the same vector", which is :func:`vector_ids`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from siamese.data.pairs import CHUNK, PairSet


def vector_ids(array: np.ndarray) -> np.ndarray:
    """A 64-bit id per row of ``array``: a hash of its float32 bytes, so equal rows get equal ids.

    ``-0.0`` and ``0.0`` count as equal; distinct rows collide with probability about
    n²/2⁶⁵ (negligible below billions of rows).

    Args:
        array: (n, d) vectors.

    Returns:
        (n,) ``uint64`` ids.
    """
    ids = np.empty(len(array), np.uint64)
    for start in range(0, len(array), CHUNK):
        block = np.ascontiguousarray(array[start : start + CHUNK], dtype=np.float32) + np.float32(0.0)  # -0.0 → 0.0
        for i, row in enumerate(block):
            ids[start + i] = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
    return ids


def pair_ids(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """An id per pair from its sides' :func:`vector_ids`, the same for (a, b) and (b, a): every
    model here is symmetric."""
    low, high = np.minimum(left, right), np.maximum(left, right)
    return low * np.uint64(0x9E3779B97F4A7C15) ^ high  # wraps modulo 2⁶⁴: a mix, not a sum


def leakage(train: PairSet, val: PairSet, test: PairSet) -> dict[str, int]:
    """How much of validation and test the training file has already shown.

    Returns:
        ``test_pairs_seen_in_train``: test pairs whose two sides both appear (on either side) in
        the training file (training and validation split); ``val_pairs_duplicated_in_train``:
        validation pairs equal to a pair of the training split (either order).
    """
    ids = {name: (vector_ids(p.left), vector_ids(p.right)) for name, p in (("train", train), ("val", val), ("test", test))}
    seen = np.union1d(np.union1d(*ids["train"]), np.union1d(*ids["val"]))
    both = np.isin(ids["test"][0], seen) & np.isin(ids["test"][1], seen)
    dup = np.isin(pair_ids(*ids["val"]), pair_ids(*ids["train"]))
    return {"test_pairs_seen_in_train": int(both.sum()), "val_pairs_duplicated_in_train": int(dup.sum())}
