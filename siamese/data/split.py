"""The validation split and preprocessing: :func:`split_validation` (:func:`plan_split` then
:func:`apply_split`) and :class:`Preprocessor`.

Both can work in place on a :class:`~siamese.data.pairs.PairSet` whose sides share one buffer,
``CHUNK`` rows at a time, so the features are held once whatever the table's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from siamese.data.groups import grouped_split, repeats
from siamese.data.pairs import CHUNK, PairSet
from siamese.errors import ConfigError, DataError

PREPROCESSING = ("none", "standardize", "l2")
NORM_FLOOR = 1e-12  # l2 preprocessing divides by max(norm, NORM_FLOOR): a zero vector stays zero
SPLITS = ("auto", "grouped", "random")


@dataclass
class SplitPlan:
    """Which rows (sorted indices) are training and validation pairs; rows in neither are left out.

    Attributes:
        grouped: the split kept every exact vector on one side (``data.split=grouped``, or ``auto``
            on a table whose vectors repeat across rows).
        dropped: pairs left out because they join a training vector to a validation vector.
    """

    train: np.ndarray
    val: np.ndarray
    grouped: bool = False
    dropped: int = 0


def _partition(arrays: list[np.ndarray], first: np.ndarray, rest: np.ndarray, chunk: int = CHUNK) -> None:
    """Reorder rows in place: rows ``first`` (sorted) to the front, then rows ``rest``; rows in
    neither end up after them.

    Only ``rest`` is copied aside; the front is compacted forward chunk by chunk, which is safe
    because ``first[k] >= k`` for sorted indices.
    """
    for a in arrays:
        aside = a[rest]
        for start in range(0, len(first), chunk):
            idx = first[start : start + chunk]
            a[start : start + len(idx)] = a[idx]
        a[len(first) : len(first) + len(rest)] = aside


def plan_split(pairs: PairSet, fraction: float, shuffle: bool, seed: int, mode: str = "random",
               ids: tuple[np.ndarray, np.ndarray] | None = None) -> SplitPlan:
    """Choose the validation rows (see :func:`split_validation` for the arguments).

    Raises:
        DataError: a fraction outside (0, 1), or too few pairs for it.
        ConfigError: an unknown ``mode``, ``grouped`` without ``shuffle``, or ``grouped`` without ``ids``.
    """
    if mode not in SPLITS:
        raise ConfigError(f"data.split={mode!r} is not one of {list(SPLITS)}")
    if not 0.0 < fraction < 1.0:
        raise DataError(f"data.val_fraction must be in (0, 1), got {fraction}")
    n = len(pairs)
    n_val = int(round(n * fraction))
    if n_val < 2 or n - n_val < 2:
        raise DataError(f"{n} training pairs are too few to hold out a {fraction} validation split")
    if mode == "grouped" and not shuffle:
        raise ConfigError("data.split=grouped needs data.shuffle=true (shuffle=false holds out the last rows as they are)")
    if mode != "random" and shuffle and ids is None:
        raise ConfigError(f"data.split={mode} needs the vector ids of the pairs")
    if not shuffle:
        return SplitPlan(np.arange(n - n_val), np.arange(n - n_val, n))
    if mode == "grouped" or (mode == "auto" and repeats(*ids)):
        cut = grouped_split(ids[0], ids[1], pairs.y, n_val, seed)
        if len(cut.val) < 2 or len(cut.train) < 2:
            raise DataError(f"a grouped validation split of {n} pairs leaves {len(cut.train)} for training and "
                            f"{len(cut.val)} for validation; set data.split=random or another data.val_fraction")
        return SplitPlan(cut.train, cut.val, grouped=True, dropped=cut.dropped)
    from sklearn.model_selection import train_test_split

    train_idx, val_idx = (np.sort(i) for i in train_test_split(
        np.arange(n), test_size=n_val, random_state=seed, stratify=pairs.y))
    return SplitPlan(train_idx, val_idx)


def apply_split(pairs: PairSet, plan: SplitPlan, inplace: bool = False) -> tuple[PairSet, PairSet]:
    """The training and validation pairs a plan names.

    Args:
        inplace: reorder ``pairs`` (which must share one buffer) so both parts are views of it,
            instead of copying them; ``pairs`` itself then starts with train rows, then val rows.
    """
    if not (inplace and pairs.buffer is not None):
        return pairs.take(plan.train), pairs.take(plan.val)
    n_train, n_val = len(plan.train), len(plan.val)
    if not (n_train + n_val == len(pairs) and plan.train[-1] == n_train - 1):  # already in place: head/tail
        _partition([pairs.buffer, pairs.y], plan.train, plan.val)
    return (PairSet.of(pairs.buffer[:n_train], pairs.y[:n_train]),
            PairSet.of(pairs.buffer[n_train : n_train + n_val], pairs.y[n_train : n_train + n_val]))


def split_validation(pairs: PairSet, fraction: float, shuffle: bool, seed: int, inplace: bool = False,
                     mode: str = "random", ids: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[PairSet, PairSet]:
    """Hold out a validation set from the training pairs.

    With ``shuffle`` the split is seeded: stratified by label (``random``), or keeping every exact
    vector on one side of the cut (``grouped``; ``auto`` groups when vectors repeat across rows).
    Without it the last ``fraction`` of rows is held out, as the question's script did. Each part
    keeps the file's row order.

    Args:
        pairs: the training file's pairs.
        fraction: the share of pairs held out (a grouped split gets about as many).
        shuffle: seeded split; ``False`` holds out the last rows.
        seed: the split's seed.
        inplace: reorder ``pairs`` (which must share one buffer) so both parts are views of it,
            instead of copying them; ``pairs`` itself is then train rows followed by val rows.
        mode: ``random``, ``grouped`` or ``auto`` (``data.split``).
        ids: (left, right) vector ids of the pairs (:func:`siamese.data.identity.pair_ids`), for
            ``grouped`` and ``auto``.
    """
    return apply_split(pairs, plan_split(pairs, fraction, shuffle, seed, mode, ids), inplace)


def check_class_counts(source: str, train: PairSet, val: PairSet | None, minimum: int, fraction: float) -> None:
    """Each class at least ``minimum`` times in the training and in the validation split.

    With ``val`` None, ``train`` is the whole file before the split: it needs ``2 × minimum`` of
    each class to leave ``minimum`` on both sides of the cut (and the stratified split needs two).

    Raises:
        DataError: naming the counts and the fix (``data.val_fraction``, more pairs,
            ``data.min_class_count``).
    """
    def counts(p: PairSet) -> tuple[int, int]:
        same = int(np.count_nonzero(p.y > 0.5))
        return same, len(p) - same

    setting = f"data.min_class_count={minimum}"
    if val is None:
        same, diff = counts(train)
        if min(same, diff) < max(2 * minimum, 2):
            raise DataError(f"{source}: {same} 'same' (1) and {diff} 'different' (0) pairs: too few to keep at least "
                            f"{minimum} of each class in both the training and the validation split ({setting}); "
                            "add pairs of the rarer class")
        return
    (ts, td), (vs, vd) = counts(train), counts(val)
    if min(ts, td, vs, vd) < minimum:
        raise DataError(f"{source}: the validation split (data.val_fraction={fraction}) has {vs} 'same' (1) and {vd} "
                        f"'different' (0) pairs, the training split {ts} and {td}; each class needs at least {minimum} "
                        f"in both ({setting}): change data.val_fraction, add pairs of the rarer class, or lower "
                        "data.min_class_count")


@dataclass
class Preprocessor:
    """A transform fit on the training split only and applied to both sides alike."""

    kind: str = "none"
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    @classmethod
    def fit(cls, kind: str, pairs: PairSet) -> "Preprocessor":
        """Fit on training pairs; both sides share one transform so the model stays symmetric."""
        if kind not in PREPROCESSING:
            raise DataError(f"data.preprocess must be one of {list(PREPROCESSING)}, got '{kind}'")
        if kind != "standardize":
            return cls(kind)
        # Two passes in chunks (mean, then squared deviations) in float64: no copy of the data.
        sides = (pairs.left, pairs.right)
        count = 2 * len(pairs)
        mean = sum(a[s : s + CHUNK].sum(axis=0, dtype=np.float64) for a in sides for s in range(0, len(a), CHUNK)) / count
        var = sum(np.square(a[s : s + CHUNK] - mean).sum(axis=0) for a in sides for s in range(0, len(a), CHUNK)) / count
        std = np.sqrt(var)
        return cls(kind, mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply to one side's vectors."""
        if self.kind == "standardize":
            return ((x - self.mean) / self.scale).astype(np.float32)
        if self.kind == "l2":
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            return (x / np.maximum(norm, NORM_FLOOR)).astype(np.float32)
        return x

    def apply(self, pairs: PairSet) -> PairSet:
        """Apply to both sides of a pair set (a transformed copy)."""
        return PairSet(self.transform(pairs.left), self.transform(pairs.right), pairs.y)

    def apply_inplace(self, pairs: PairSet) -> PairSet:
        """Apply to both sides in place, chunk by chunk (same values as :meth:`apply`)."""
        if self.kind != "none":
            for a in (pairs.left, pairs.right):
                for s in range(0, len(a), CHUNK):
                    a[s : s + CHUNK] = self.transform(a[s : s + CHUNK])
        return pairs

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "mean": None if self.mean is None else self.mean.tolist(),
            "scale": None if self.scale is None else self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessor":
        arr = lambda v: None if v is None else np.asarray(v, dtype=np.float32)  # noqa: E731
        return cls(d["kind"], arr(d.get("mean")), arr(d.get("scale")))
