"""Exact vector identity: which rows of which arrays hold the same vector.

The validation split groups pairs by the vectors they share, and every run reports how many test
pairs reuse a training vector; both need one id per distinct vector, across several arrays.
"""

from __future__ import annotations

import hashlib

import numpy as np

from siamese.data.pairs import CHUNK, PairSet

_ZERO = np.float32(0.0)


def vector_ids(*blocks: np.ndarray) -> list[np.ndarray]:
    """One integer id per row of each (n, d) block: equal rows (exactly equal values) share an id.

    Ids are dense (0 … k−1) and shared across the blocks, numbered in order of first appearance.
    Rows are hashed in chunks, so a strided view (one side of a pair buffer) is never copied whole.
    ``-0.0`` and ``0.0`` count as the same value.
    """
    seen: dict[bytes, int] = {}
    out = []
    for block in blocks:
        ids = np.empty(len(block), np.int64)
        for start in range(0, len(block), CHUNK):
            # + 0.0 turns -0.0 into 0.0, so equal values have equal bytes; float32 whatever came in.
            part = np.ascontiguousarray(block[start : start + CHUNK], dtype=np.float32) + _ZERO
            for i, row in enumerate(part):
                key = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
                ids[start + i] = seen.setdefault(key, len(seen))
        out.append(ids)
    return out


def pair_ids(*sets: PairSet) -> list[tuple[np.ndarray, np.ndarray]]:
    """(left ids, right ids) of each pair set, in one id space (see :func:`vector_ids`)."""
    flat = vector_ids(*(side for s in sets for side in (s.left, s.right)))
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(sets))]


def pairs_seen(ids: tuple[np.ndarray, np.ndarray], known: np.ndarray) -> int:
    """How many pairs have a side (left or right id) among the ``known`` ids."""
    left, right = ids
    return int(np.sum(np.isin(left, known) | np.isin(right, known)))


def pairs_known(ids: tuple[np.ndarray, np.ndarray], known: np.ndarray) -> int:
    """How many pairs have both sides (left and right ids) among the ``known`` ids."""
    left, right = ids
    return int(np.sum(np.isin(left, known) & np.isin(right, known)))


def pairs_repeated(ids: tuple[np.ndarray, np.ndarray], of: tuple[np.ndarray, np.ndarray]) -> int:
    """How many pairs equal a pair of ``of``, in either order (every model here is symmetric)."""
    def keys(sides: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        low, high = np.minimum(*sides), np.maximum(*sides)
        return np.stack([low, high], axis=1)

    known = {tuple(row) for row in keys(of).tolist()}
    return sum(tuple(row) in known for row in keys(ids).tolist())
