"""A validation split that keeps every exact vector on one side of the train/validation cut.

Pairs that share a vector are grouped (connected components of the graph whose nodes are distinct
vectors and whose edges are pairs); a seeded, roughly stratified pass puts whole groups into
validation until it holds its share. When groups are too large for that (items reused so often
that most pairs hang together, e.g. images drawn into many pairs), the largest group is cut: a
region of it is grown vector by vector, always taking the vector with the most pairs into the
region, until its inner pairs make up the shortfall; pairs joining the region to the rest belong
to neither side and are left out.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

# A group pass that falls short of the validation size by more than this share cuts a group.
SHORTFALL = 0.1


@dataclass
class GroupSplit:
    """Row indices (sorted) of the training and validation pairs, and how many pairs were left out."""

    train: np.ndarray
    val: np.ndarray
    dropped: int


def repeats(left: np.ndarray, right: np.ndarray) -> bool:
    """Whether some vector (id) occurs in more than one row."""
    other = right[right != left]  # a row whose two sides are one vector counts once
    counts = np.bincount(np.concatenate([left, other]))
    return bool(counts.max(initial=0) > 1)


def components(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The group (connected component) of each pair, by the vector ids of its sides."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = int(max(left.max(initial=-1), right.max(initial=-1))) + 1
    graph = coo_matrix((np.ones(len(left)), (left, right)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels[left]


def _fill(group: np.ndarray, y: np.ndarray, n_val: int, rng: np.random.Generator) -> np.ndarray:
    """Whole groups, in a seeded order, into validation without overshooting either class's share."""
    sizes = np.bincount(group)
    pos = np.bincount(group, weights=y).astype(np.int64)
    want_pos = int(np.ceil(n_val * float(y.mean())))
    want_neg = n_val - int(np.floor(n_val * float(y.mean())))
    taken = np.zeros(len(sizes), bool)
    got_pos = got_neg = 0
    for g in rng.permutation(len(sizes)):
        p, q = int(pos[g]), int(sizes[g] - pos[g])
        if sizes[g] and got_pos + p <= want_pos and got_neg + q <= want_neg:
            taken[g], got_pos, got_neg = True, got_pos + p, got_neg + q
    return taken


def _grow(left: np.ndarray, right: np.ndarray, rows: np.ndarray, want: int, rng: np.random.Generator) -> np.ndarray:
    """A region of the vectors of ``rows`` (one group) with at least ``want`` inner pairs.

    Returns:
        A mask over ``rows``: the pairs with both sides in the region.
    """
    a, b = left[rows], right[rows]
    nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    a, b = inv[: len(rows)], inv[len(rows) :]
    loops = np.bincount(a[a == b], minlength=len(nodes))
    ends = np.concatenate([a[a != b], b[a != b]])
    others = np.concatenate([b[a != b], a[a != b]])
    order = np.argsort(ends, kind="stable")
    starts = np.searchsorted(ends[order], np.arange(len(nodes) + 1))
    neighbours = others[order]
    inside = np.zeros(len(nodes), bool)
    into = np.zeros(len(nodes), np.int64)  # pairs joining each vector to the region
    tie = rng.random(len(nodes))
    heap = [(0, tie[s], int(s)) for s in rng.choice(len(nodes), 1)]
    inner = 0
    while heap and inner < want:
        key, _, v = heapq.heappop(heap)
        if inside[v] or -key != into[v]:
            continue  # already taken, or a stale entry (the vector has since gained pairs)
        inside[v] = True
        inner += int(into[v] + loops[v])
        for u in neighbours[starts[v] : starts[v + 1]]:
            if not inside[u]:
                into[u] += 1
                heapq.heappush(heap, (-int(into[u]), tie[u], int(u)))
    return inside[a] & inside[b]


def grouped_split(left: np.ndarray, right: np.ndarray, y: np.ndarray, n_val: int, seed: int) -> GroupSplit:
    """Split pairs so that no vector id is on both sides; about ``n_val`` pairs in validation.

    Args:
        left: the vector id of each pair's left side (see :func:`siamese.data.identity.vector_ids`).
        right: the same for the right side.
        y: 0/1 labels, for a roughly stratified pass.
        n_val: the validation size wanted.
        seed: fixes the order groups are tried in and where a cut starts.
    """
    rng = np.random.default_rng(seed)
    group = components(left, right)
    in_val = _fill(group, y, n_val, rng)[group]
    dropped = np.zeros(len(y), bool)
    short = n_val - int(in_val.sum())
    if short > SHORTFALL * n_val:
        sizes = np.bincount(group, minlength=int(group.max(initial=-1)) + 1)
        sizes[np.unique(group[in_val])] = 0
        rows = np.flatnonzero(group == int(np.argmax(sizes)))
        region = _grow(left, right, rows, short, rng)
        in_val[rows[region]] = True
        ids = np.unique(np.concatenate([left[rows[region]], right[rows[region]]]))
        dropped[rows[~region]] = np.isin(left[rows[~region]], ids) | np.isin(right[rows[~region]], ids)
    return GroupSplit(np.flatnonzero(~in_val & ~dropped), np.flatnonzero(in_val), int(dropped.sum()))
