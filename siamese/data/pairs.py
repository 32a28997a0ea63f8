"""Pair types and column specs: :class:`PairSet`, :class:`ColumnSpec` and :func:`column_spec`.

A pair table has feature columns (left vector then right vector, ``v0 … v{2d-1}`` by default)
and a label column, 1 = same, 0 = different. This module says which columns are which and holds
the rows once read; it reads no files. ``CHUNK`` (rows per in-place step) lives here because both
the readers and the split use it.
"""

from __future__ import annotations

import re
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


# Columns pandas or pyarrow add for a saved index: never features unless a user names them.
INDEX_COLUMN = re.compile(r"Unnamed: \d+(\.\d+)?|__index_level_\d+__|index")
FEATURE = re.compile(r"v(\d+)")


@dataclass
class ColumnSpec:
    """Which columns hold the label, the left vector and the right vector, and which are dropped.

    ``left[i]`` and ``right[i]`` are the same feature of the two sides (the encoder is shared).
    ``ignore`` is the user's ``data.ignore`` list: columns dropped wherever they appear.
    """

    label: str = "class"
    left: list[str] = field(default_factory=list)
    right: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        """Left then right feature column names."""
        return self.left + self.right

    def droppable(self, name: str) -> bool:
        """A column dropped with a notice: in ``ignore``, or a saved index nobody claimed."""
        claimed = name == self.label or name in self.left or name in self.right
        return name in self.ignore or (not claimed and INDEX_COLUMN.fullmatch(name) is not None)

    def describe(self) -> str:
        """``left v0…v63 (64), right v64…v127 (64), label 'class'``, for the run's log."""
        return (f"left {_span(self.left)} ({len(self.left)}), right {_span(self.right)} ({len(self.right)}), "
                f"label '{self.label}'")

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "left": self.left, "right": self.right, "ignore": self.ignore}


def _span(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]}…{names[-1]}"


def _quoted(names: Sequence[str], limit: int = 5) -> str:
    """``'a', 'b', … (12)``: a list of names short enough for a one-line message."""
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f", … ({len(names)})" if len(names) > limit else "")


def _by_suffix(prefix: str, names: list[str]) -> dict[str, str]:
    return {n[len(prefix):]: n for n in names if n.startswith(prefix)}


def _suffix_order(suffixes: list[str]) -> list[str]:
    """Numeric suffixes by value (``x2`` before ``x10``), others as they come in the file."""
    return sorted(suffixes, key=int) if all(s.isdigit() for s in suffixes) else suffixes


def _prefixes(left: str, right: str, names: list[str], path: Path) -> tuple[list[str], list[str]]:
    """Left and right columns by prefix, paired by what follows it: ``a_x`` goes with ``b_x``."""
    lmap, rmap = _by_suffix(left, names), _by_suffix(right, names)
    if left.startswith(right) or right.startswith(left):  # 'v' and 'v1': one side would hold the other's columns
        raise DataError(f"{path}: data.left='{left}' and data.right='{right}' overlap; use prefixes that differ")
    for side, prefix, found in (("left", left, lmap), ("right", right, rmap)):
        if not found:
            raise DataError(f"{path}: no column starts with {side} prefix '{prefix}'")
    only_l, only_r = sorted(set(lmap) - set(rmap)), sorted(set(rmap) - set(lmap))
    if only_l or only_r:
        odd = [lmap[s] for s in only_l] + [rmap[s] for s in only_r]
        raise DataError(f"{path}: column(s) {_quoted(odd)} have no partner on the other side "
                        f"(left '{left}…' and right '{right}…' columns are paired by what follows the prefix)")
    order = _suffix_order(list(lmap))
    return [lmap[s] for s in order], [rmap[s] for s in order]


def _lists(left: Any, right: Any, names: list[str], path: Path) -> tuple[list[str], list[str]]:
    lcols, rcols = [str(c) for c in left], [str(c) for c in right]
    missing = [c for c in lcols + rcols if c not in names]
    if missing:
        raise DataError(f"{path}: column(s) {_quoted(missing)} named in data.left / data.right not found")
    if len(lcols) != len(rcols):
        raise DataError(f"{path}: left has {len(lcols)} columns but right has {len(rcols)}")
    both = sorted(set(lcols) & set(rcols))
    if both or len(set(lcols)) < len(lcols) or len(set(rcols)) < len(rcols):
        raise DataError(f"{path}: data.left / data.right name a column twice: {_quoted(both or lcols)}")
    return lcols, rcols


def _numbered(features: list[str], label: str | None, path: Path) -> tuple[list[str], list[str]]:
    """The default layout: ``v0 … v{2d-1}`` ordered by index whatever the file order; halves are the sides."""
    index = {n: int(m.group(1)) for n in features if (m := FEATURE.fullmatch(n))}
    others = [n for n in features if n not in index]
    if others and not index:
        raise DataError(f"{path}: columns {_quoted(others)} are not named v0…v<2d-1>: set data.left and data.right "
                        "(prefixes or lists) to say which are the two sides")
    if others:
        raise DataError(f"{path}: column(s) {_quoted(others)} are neither features (v0…v{len(index) - 1}) nor the "
                        f"label '{label}': drop them, or list them in data.ignore")
    if not index:
        raise DataError(f"{path}: no feature columns besides '{label}'")
    n = len(index)
    if n % 2:
        raise DataError(f"{path}: {n} feature columns is odd; half/half split needs an even "
                        "number (or set data.left / data.right)")
    values = sorted(index.values())
    if values != list(range(n)):
        missing = sorted(set(range(n)) - set(values))
        seen: dict[int, str] = {}
        twice = [n_ for n_ in features if seen.setdefault(index[n_], n_) != n_]
        problem = (f"v{missing[0]} is missing" if missing else "") + (", " if missing and twice else "") + \
                  (f"'{twice[0]}' repeats v{index[twice[0]]}" if twice else "")
        raise DataError(f"{path}: feature columns must be v0…v{n - 1} (one each); {problem}")
    order = sorted(features, key=index.__getitem__)
    return order[: n // 2], order[n // 2 :]


def column_spec(names: Sequence[str], label: str | None, left: Any, right: Any, path: Path,
                ignore: Sequence[str] = ()) -> ColumnSpec:
    """Work out which columns are the label, left and right vectors, by name.

    Args:
        names: the file's column names in order.
        label: the label column; ``None`` when the file may have no labels (predict time).
        left: ``None`` for ``v0 … v{2d-1}`` (ordered by index, first half left), a prefix, or a list.
        right: as ``left``; required when ``left`` is given.
        path: the file, for messages.
        ignore: columns to drop (``data.ignore``); saved index columns are dropped too.

    Raises:
        DataError: a column that is neither a feature, the label nor dropped, or a layout that
            does not pair up, named in one line.
    """
    names = [str(n) for n in names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{path}: column(s) {_quoted(twice)} appear more than once")
    if (left is None) != (right is None):
        raise DataError(f"{path}: give both data.left and data.right, or neither")
    base = ColumnSpec(label or "", [], [], [str(c) for c in ignore])
    if isinstance(left, str) and isinstance(right, str):
        lcols, rcols = _prefixes(left, right, [n for n in names if not base.droppable(n)], path)
    elif left is not None:
        if isinstance(left, str) or isinstance(right, str):
            raise DataError(f"{path}: data.left and data.right must both be prefixes or both be lists")
        lcols, rcols = _lists(left, right, names, path)
    else:
        lcols, rcols = _numbered([n for n in names if n != label and not base.droppable(n)], label, path)
    spec = ColumnSpec(base.label, lcols, rcols, base.ignore)
    extra = [n for n in names if n not in spec.features and n != label and not spec.droppable(n)]
    if extra:
        raise DataError(f"{path}: column(s) {_quoted(extra)} are neither in data.left / data.right nor the label "
                        f"'{label}': drop them, or list them in data.ignore")
    return spec


def check_columns(names: Sequence[str], spec: ColumnSpec, path: str | Path, labelled: bool,
                  what: str = "the training file") -> list[str]:
    """A table must have exactly ``spec``'s columns (label optional unless ``labelled``), in any order.

    Returns:
        The columns dropped: saved index columns and those in ``spec.ignore``.

    Raises:
        DataError: a missing or extra column, naming them.
    """
    names = [str(n) for n in names]
    needed = spec.features + ([spec.label] if labelled else [])
    missing = [c for c in needed if c not in names]
    extra = [n for n in names if n not in spec.features and n != spec.label and not spec.droppable(n)]
    if missing or extra:
        parts = ([f"missing {_quoted(missing)}"] if missing else []) + ([f"extra {_quoted(extra)}"] if extra else [])
        raise DataError(f"{path}: columns differ from {what}'s ({'; '.join(parts)}); it takes "
                        f"{spec.describe()}" + ("; list extra columns in data.ignore to drop them" if extra else ""))
    return [n for n in names if spec.droppable(n)]
