"""Pairs the training labels imply: "same" is an equivalence, so it chains.

When items repeat across training pairs (an image in several pairs), the labels say more than their
rows: if a ~ b and b ~ c then a ~ c, and if a ~ b, c ~ d and a ≁ c then b ≁ d. Items are exact
vectors (:mod:`siamese.data.identity`); the "same" pairs join them into groups (connected
components), and a "different" pair between two groups makes every cross pair different. This is
the label closure used for pair and triplet mining (e.g. Schroff et al. 2015, FaceNet, §3.2: pairs
formed from identity labels rather than given rows); here only the training split is mined, so
validation and test stay as they were.

A group that holds a "different" pair contradicts itself (the labels are not an equivalence there):
it yields no implied pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from siamese.data.identity import vector_ids
from siamese.data.pairs import PairSet


@dataclass(frozen=True)
class Closure:
    """Groups of the training items under "same", and which groups are known to differ.

    Attributes:
        group: (n_items,) the group of each distinct training vector.
        first: (n_items, 2) a (row, side) holding each item's vector (side 0: left, 1: right).
        differ: (m, 2) pairs of distinct, consistent groups joined by a "different" pair.
        bad: (n_groups,) groups holding a "different" pair inside (excluded from mining).
        given: (n, 2) the item ids of each given row (left, right).
    """

    group: np.ndarray
    first: np.ndarray
    differ: np.ndarray
    bad: np.ndarray
    given: np.ndarray

    def counts(self) -> tuple[int, int]:
        """(implied same pairs, implied different pairs), given ones included, over consistent groups."""
        sizes = np.bincount(self.group)
        ok = ~self.bad
        same = int(np.sum((sizes * (sizes - 1) // 2)[ok]))
        return same, int(np.sum(sizes[self.differ[:, 0]] * sizes[self.differ[:, 1]]))

    def new_counts(self, y: np.ndarray) -> tuple[int, int]:
        """(same, different) pairs the closure implies beyond the given ones (``y``: their labels).

        A given pair counts once however often its row repeats, and only where :meth:`counts` counts
        it: a pair inside a contradictory group, or of one item with itself, takes nothing away.
        """
        a, b = self.given[:, 0], self.given[:, 1]
        ga, gb = self.group[a], self.group[b]
        n = len(self.group)
        same_rows = (y == 1) & (a != b) & ~self.bad[ga]
        diff_rows = (y != 1) & (ga != gb) & ~self.bad[ga] & ~self.bad[gb]
        given_same = len(np.unique(_keys(a[same_rows], b[same_rows], n)))
        given_diff = len(np.unique(_keys(a[diff_rows], b[diff_rows], n)))
        implied_same, implied_diff = self.counts()
        return max(implied_same - given_same, 0), max(implied_diff - given_diff, 0)


def closure(pairs: PairSet) -> Closure:
    """The "same" groups of the labelled ``pairs`` and the group pairs known to differ.

    Raises:
        ValueError: ``pairs`` has no labels.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if pairs.y is None:
        raise ValueError("implied pairs need labelled pairs")
    left, right = vector_ids(pairs.left, pairs.right)
    n = int(max(left.max(initial=-1), right.max(initial=-1))) + 1
    same = pairs.y == 1
    graph = coo_matrix((np.ones(int(same.sum())), (left[same], right[same])), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    # Each item's first occurrence, scanning left sides then right sides.
    _, at = np.unique(np.concatenate([left, right]), return_index=True)
    first = np.stack([at % len(left), at // len(left)], axis=1)
    a, b = group[left[~same]], group[right[~same]]
    bad = np.zeros(int(group.max(initial=-1)) + 1, bool)
    bad[a[a == b]] = True
    keep = (a != b) & ~bad[a] & ~bad[b]
    differ = np.unique(np.sort(np.stack([a[keep], b[keep]], axis=1), axis=1), axis=0)
    return Closure(group, first, differ.reshape(-1, 2), bad, np.stack([left, right], axis=1))


def _keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """One int64 per unordered item pair (every model here is symmetric: (a, b) is (b, a))."""
    return np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b)


def _vectors(pairs: PairSet, c: Closure, items: np.ndarray) -> np.ndarray:
    rows, sides = c.first[items, 0], c.first[items, 1]
    out = pairs.left[rows].copy()
    out[sides == 1] = pairs.right[rows[sides == 1]]
    return out


def _quota(new_same: int, new_diff: int, want: int) -> tuple[int, int]:
    """(same, different) pairs to mine of ``want``: half each, none beyond what the closure adds
    (``new_same``, ``new_diff``: :meth:`Closure.new_counts`)."""
    # No more of a class than the closure adds beyond the given rows: on a table whose items do not
    # repeat it adds nothing, and mining would only repeat given pairs (and tilt the class balance).
    n_same = min(want // 2 if new_diff else want, new_same)
    return n_same, min(want - n_same, new_diff)


def _excluded(pairs: PairSet, exclude: Sequence[PairSet]) -> np.ndarray:
    """The keys (:func:`_keys`, training item ids) of the pairs of ``exclude`` whose both vectors are
    training vectors; ids come out as :func:`closure` numbers them (training sides first)."""
    if not exclude:
        return np.zeros(0, np.int64)
    ids = vector_ids(pairs.left, pairs.right, *(side for e in exclude for side in (e.left, e.right)))
    n = int(max(ids[0].max(initial=-1), ids[1].max(initial=-1))) + 1
    a, b = np.concatenate(ids[2::2]), np.concatenate(ids[3::2])
    inside = (a < n) & (b < n)
    return _keys(a[inside], b[inside], n)


def implied_pairs(pairs: PairSet, ratio: float, seed: int, exclude: Sequence[PairSet] = ()) -> PairSet:
    """``ratio × len(pairs)`` pairs sampled from the closure of the labels, half same, half different.

    No mined pair repeats a given row, a pair of ``exclude`` or another mined pair (in either order).
    Same pairs: an anchor item drawn uniformly from the items of consistent groups of two or more, and
    another item of its group. Different pairs: an anchor drawn uniformly from the items of groups
    known to differ from another group, and an item of one such group (drawn uniformly among them).
    Where a class's share is half or more of what the closure adds to it, its pairs are drawn
    uniformly from the list of them instead, so the share is met whenever the closure holds it. A
    class gets at most as many pairs as the closure implies beyond the given rows (none on a table
    whose items do not repeat); a class with nothing to add leaves its share to the other.

    Args:
        pairs: the labelled training pairs, (n, d) a side.
        ratio: mined pairs per given pair (0: none).
        seed: the sampling seed.
        exclude: pairs never to mine (validation and test: where they share vectors with training,
            their own pairs are often implied, and mining them would train on them).

    Returns:
        The mined pairs, float32 (k, d) a side, k ≤ round(ratio · n); labels 1.0 / 0.0.
    """
    want = int(round(ratio * len(pairs)))
    if want <= 0:
        return PairSet(pairs.left[:0], pairs.right[:0], pairs.y[:0])
    c = closure(pairs)
    rng = np.random.default_rng(seed)
    sizes = np.bincount(c.group)
    members = np.argsort(c.group, kind="stable")  # items grouped by their group
    starts = np.concatenate([[0], np.cumsum(sizes)])

    rank = np.empty(len(members), np.int64)  # each item's place within its group
    rank[members] = np.arange(len(members)) - starts[c.group[members]]

    def member(groups: np.ndarray) -> np.ndarray:
        """A uniform item of each group."""
        return members[starts[groups] + (rng.random(len(groups)) * sizes[groups]).astype(np.int64)]

    def partner(items: np.ndarray) -> np.ndarray:
        """A uniform other item of each item's group (groups of two or more)."""
        g = c.group[items]
        r = (rng.random(len(items)) * (sizes[g] - 1)).astype(np.int64)
        return members[starts[g] + r + (r >= rank[items])]

    new_same, new_diff = c.new_counts(pairs.y)
    n_same, n_diff = _quota(new_same, new_diff, want)
    given = np.concatenate([_keys(c.given[:, 0], c.given[:, 1], len(c.group)), _excluded(pairs, exclude)])

    def fresh(draw: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` distinct (anchor, other) item pairs from ``draw(k)``, none equal to a given row:
        drawn in rounds, given and repeated ones dropped (fewer when fresh ones are rare after 8 rounds)."""
        got_a, got_b, taken = [], [], given
        for _ in range(8):
            a, b = draw(2 * (n - sum(map(len, got_a))) + 16)
            keys = _keys(a, b, len(c.group))
            _, first = np.unique(keys, return_index=True)
            keep = np.zeros(len(a), bool)
            keep[first] = True
            keep &= ~np.isin(keys, taken)
            got_a.append(a[keep]), got_b.append(b[keep])
            taken = np.concatenate([taken, keys[keep]])
            if sum(map(len, got_a)) >= n:
                break
        return np.concatenate(got_a)[:n], np.concatenate(got_b)[:n]

    def listed(pairs_of: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` of the listed (item, item) pairs, none given, uniformly without replacement."""
        a = np.concatenate([p[0] for p in pairs_of]) if pairs_of else np.zeros(0, np.int64)
        b = np.concatenate([p[1] for p in pairs_of]) if pairs_of else np.zeros(0, np.int64)
        keys = _keys(a, b, len(c.group))
        _, first = np.unique(keys, return_index=True)
        first = first[~np.isin(keys[first], given)]
        chosen = first[rng.permutation(len(first))[:n]]
        return a[chosen], b[chosen]

    left, right, y = [], [], []
    anchors = np.flatnonzero((sizes[c.group] >= 2) & ~c.bad[c.group])
    if len(anchors) and n_same:
        def same(k: int) -> tuple[np.ndarray, np.ndarray]:
            a = rng.choice(anchors, k)
            return a, partner(a)

        # Half or more of what the closure adds: drawing at random would mostly hit pairs already taken
        # (and stop short of n at a count that varies with the seed), so the pairs are listed instead;
        # there are at most 2n + given of them.
        if 2 * n_same >= new_same:
            groups = [members[starts[g]:starts[g + 1]] for g in np.flatnonzero((sizes >= 2) & ~c.bad)]
            a, b = listed([(m[i], m[j]) for m in groups for i, j in [np.triu_indices(len(m), 1)]], n_same)
        else:
            a, b = fresh(same, n_same)
        left.append(a), right.append(b), y.append(np.ones(len(a), np.float32))
    if n_diff:
        edges = np.concatenate([c.differ, c.differ[:, ::-1]])  # either group may hold the anchor
        edges = edges[np.argsort(edges[:, 0], kind="stable")]
        first_edge = np.searchsorted(edges[:, 0], np.arange(len(sizes) + 1))
        degree = np.diff(first_edge)
        anchors = np.flatnonzero(degree[c.group] > 0)

        def different(k: int) -> tuple[np.ndarray, np.ndarray]:
            a = rng.choice(anchors, k)
            g = c.group[a]
            return a, member(edges[first_edge[g] + (rng.random(k) * degree[g]).astype(np.int64), 1])

        if 2 * n_diff >= new_diff:  # as for same pairs: list them
            block = lambda g, h: (np.repeat(members[starts[g]:starts[g + 1]], sizes[h]),  # noqa: E731
                                  np.tile(members[starts[h]:starts[h + 1]], sizes[g]))
            a, b = listed([block(g, h) for g, h in c.differ], n_diff)
        else:
            a, b = fresh(different, n_diff)
        left.append(a), right.append(b), y.append(np.zeros(len(a), np.float32))
    if not y:
        return PairSet(pairs.left[:0], pairs.right[:0], pairs.y[:0])
    a, b = np.concatenate(left), np.concatenate(right)
    flip = rng.random(len(a)) < 0.5  # the anchor on either side
    a, b = np.where(flip, b, a), np.where(flip, a, b)
    return PairSet(_vectors(pairs, c, a), _vectors(pairs, c, b), np.concatenate(y).astype(pairs.y.dtype))


def implied_note(pairs: PairSet, ratio: float, searched: bool = False) -> str | None:
    """One line for a run's start: how many pairs the training labels imply and how many a run adds.

    Args:
        pairs: the labelled training pairs.
        ratio: ``training.implied_pairs`` (0: no line, unless searched).
        searched: the study's space searches ``training.implied_pairs`` (each trial mines its own).

    Returns:
        The line, or None when ``ratio`` is 0 and not searched.
    """
    if not ratio and not searched:
        return None
    c = closure(pairs)
    new_same, new_diff = c.new_counts(pairs.y)
    bad = int(c.bad.sum())
    contradict = (f"; {bad} group(s) of vectors joined by 'same' hold a 'different' pair, and a group whose labels "
                  f"contradict themselves implies nothing" if bad else "")
    head = "training.implied_pairs is searched" if searched else f"training.implied_pairs={ratio:g}"
    if not new_same + new_diff:
        return (f"{head}: the training labels imply no pair beyond the given ones, so none is added (it takes "
                f"vectors that repeat across pairs{contradict})")
    implied = (f"vectors repeat across the {len(pairs):,} training pairs, so their labels imply {new_same:,} more "
               f"same and {new_diff:,} more different pairs{contradict}")
    if searched:
        return f"{head}: {implied}; each trial adds its own ratio of them per given pair"
    n_same, n_diff = _quota(new_same, new_diff, int(round(ratio * len(pairs))))
    return (f"{head}: {implied}; each run adds up to {n_same + n_diff:,} of them ({n_same:,} same, {n_diff:,} "
            f"different), an epoch up to {(len(pairs) + n_same + n_diff) / len(pairs):.1f}× as long "
            f"(training.implied_pairs=0 turns it off; no validation or test pair is mined)")
