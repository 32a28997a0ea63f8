"""Pair types and column specs: :class:`PairSet`, :class:`ColumnSpec` and :func:`column_spec`.

A pair table has feature columns (left vector then right vector, ``v0 … v{2d-1}`` by default)
and a label column, 1 = same, 0 = different. This module says which columns are which and holds
the rows once read; it reads no files. ``CHUNK`` (rows per in-place step) lives here because both
the readers and the split use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from siamese.errors import DataError

CHUNK = 65_536  # rows per step when working in place


@dataclass
class PairSet:
    """Aligned left vectors, right vectors and 0/1 labels (labels may be absent at predict time)."""

    left: np.ndarray
    right: np.ndarray
    y: np.ndarray | None = None
    # The (n, 2d) array whose halves ``left`` and ``right`` are, when they share one: lets the
    # split and preprocessing work in place instead of copying the features.
    buffer: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def of(cls, buffer: np.ndarray, y: np.ndarray | None) -> "PairSet":
        """Pairs as views of one (n, 2d) array: left half, right half."""
        d = buffer.shape[1] // 2
        return cls(buffer[:, :d], buffer[:, d:], y, buffer)

    def __len__(self) -> int:
        return len(self.left)

    @property
    def dim(self) -> int:
        """Width of one side."""
        return int(self.left.shape[1])

    def take(self, idx: np.ndarray) -> "PairSet":
        """The rows at ``idx``."""
        return PairSet(self.left[idx], self.right[idx], None if self.y is None else self.y[idx])

    def swapped(self) -> "PairSet":
        """The same pairs with left and right exchanged."""
        return PairSet(self.right, self.left, self.y)

    def concat(self, other: "PairSet") -> "PairSet":
        """This set followed by ``other``."""
        y = None if self.y is None else np.concatenate([self.y, other.y])
        return PairSet(
            np.concatenate([self.left, other.left]), np.concatenate([self.right, other.right]), y
        )


@dataclass
class ColumnSpec:
    """Which columns hold the label, the left vector and the right vector."""

    label: str = "class"
    left: list[str] = field(default_factory=list)
    right: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        """Left then right feature column names."""
        return self.left + self.right

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "left": self.left, "right": self.right}


def _pick(side: Any, names: list[str], what: str, path: Path) -> list[str] | None:
    """Columns for one side: None (half mode), a prefix string, or an explicit list."""
    if side is None:
        return None
    if isinstance(side, str):
        picked = [c for c in names if c.startswith(side)]
        if not picked:
            raise DataError(f"{path}: no column starts with {what} prefix '{side}'")
        return picked
    picked = [str(c) for c in side]
    missing = [c for c in picked if c not in names]
    if missing:
        raise DataError(f"{path}: {what} column '{missing[0]}' not found")
    return picked


def column_spec(names: Sequence[str], label: str | None, left: Any, right: Any, path: Path) -> ColumnSpec:
    """Work out which columns are the label, left and right vectors.

    Args:
        names: the file's column names in order.
        label: the label column; ``None`` when the file may have no labels (predict time).
        left: ``None`` for half/half of the feature columns, a prefix, or a list of names.
        right: as ``left``; required when ``left`` is given.
        path: the file, for messages.
    """
    names = [str(n) for n in names]
    features = [n for n in names if n != label]
    if (left is None) != (right is None):
        raise DataError(f"{path}: give both data.left and data.right, or neither")
    if left is None:
        if len(features) == 0:
            raise DataError(f"{path}: no feature columns besides '{label}'")
        if len(features) % 2:
            raise DataError(
                f"{path}: {len(features)} feature columns is odd; half/half split needs an even "
                "number (or set data.left / data.right)"
            )
        half = len(features) // 2
        return ColumnSpec(label or "", features[:half], features[half:])
    lcols, rcols = _pick(left, names, "left", path), _pick(right, names, "right", path)
    if len(lcols) != len(rcols):
        raise DataError(f"{path}: left has {len(lcols)} columns but right has {len(rcols)}")
    return ColumnSpec(label or "", lcols, rcols)
