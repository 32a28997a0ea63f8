"""Implied pairs: the closure of "same" over items that repeat across training pairs.

Items carry a hidden class; pairs are labelled by it, so every mined pair's label can be checked
against the truth the given labels only partly show.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siamese.data import PairSet
from siamese.data.identity import vector_ids
from siamese.data.implied import closure, implied_pairs
from siamese.engine import RunSpec, fit
from siamese.errors import ConfigError


def labelled_items(n_items: int, n_pairs: int, n_classes: int, seed: int, dim: int = 5):
    """Pairs drawn from a pool of items of hidden classes; label 1 when the two classes match."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    cls = rng.integers(0, n_classes, n_items)
    a, b = rng.integers(0, n_items, n_pairs), rng.integers(0, n_items, n_pairs)
    same = rng.random(n_pairs) < 0.5  # half the rows drawn as same-class pairs, where possible
    for i in np.flatnonzero(same):
        pool = np.flatnonzero(cls == cls[a[i]])
        b[i] = rng.choice(pool)
    return items, cls, PairSet(items[a], items[b], (cls[a] == cls[b]).astype(np.float32))


def item_of(items: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    ids = vector_ids(items, vectors)
    lookup = {v: i for i, v in enumerate(ids[0])}
    return np.array([lookup[v] for v in ids[1]], dtype=np.int64)


@settings(max_examples=40, deadline=None)
@given(n_items=st.integers(2, 40), n_pairs=st.integers(1, 120), n_classes=st.integers(1, 6),
       seed=st.integers(0, 2**16), ratio=st.sampled_from([0.5, 1.0, 3.0]))
def test_every_implied_pair_carries_the_true_label(n_items, n_pairs, n_classes, seed, ratio):
    items, cls, pairs = labelled_items(n_items, n_pairs, n_classes, seed)
    mined = implied_pairs(pairs, ratio, seed)
    assert len(mined) <= round(ratio * n_pairs)
    assert mined.left.dtype == np.float32 and mined.left.shape[1:] == pairs.left.shape[1:]
    a, b = item_of(items, mined.left), item_of(items, mined.right)  # every side is a training vector
    np.testing.assert_array_equal(mined.y, (cls[a] == cls[b]).astype(np.float32))
    assert not np.any((a == b) & (mined.y == 1)), "an item paired with itself teaches nothing"
    ga, gb = item_of(items, pairs.left), item_of(items, pairs.right)
    assert set(a) | set(b) <= set(ga) | set(gb)
    given = {(min(x, z), max(x, z)) for x, z in zip(ga, gb)}
    mined_keys = [(min(x, z), max(x, z)) for x, z in zip(a, b)]
    assert not set(mined_keys) & given, "a mined pair repeats a given row"
    assert len(set(mined_keys)) == len(mined_keys), "a mined pair is drawn twice"


def brute_force_new_pairs(ga: np.ndarray, gb: np.ndarray, y: np.ndarray) -> tuple[set, set]:
    """The (same, different) item pairs the labels imply beyond the given ones, by enumeration: groups
    by union-find over "same", a group holding a "different" pair contradicts itself and implies nothing."""
    parent = {i: i for i in set(ga) | set(gb)}

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b, t in zip(ga, gb, y):
        if t == 1:
            parent[root(a)] = root(b)
    groups: dict[int, set] = {}
    for i in parent:
        groups.setdefault(root(i), set()).add(i)
    bad = {root(a) for a, b, t in zip(ga, gb, y) if t != 1 and root(a) == root(b)}
    same = {(x, z) for g, m in groups.items() if g not in bad for x in m for z in m if x < z}
    differ = {frozenset((root(a), root(b))) for a, b, t in zip(ga, gb, y)
              if t != 1 and root(a) != root(b) and root(a) not in bad and root(b) not in bad}
    diff = {(min(x, z), max(x, z)) for pair in differ for g, h in [tuple(pair)] for x in groups[g] for z in groups[h]}
    given = {(min(a, b), max(a, b)) for a, b in zip(ga, gb)}
    return same - given, diff - given


@settings(max_examples=60, deadline=None)
@given(n_items=st.integers(2, 30), n_pairs=st.integers(1, 80), n_classes=st.integers(1, 5),
       seed=st.integers(0, 2**16), noise=st.sampled_from([0.0, 0.02, 0.2]))
def test_the_counts_and_the_quota_match_an_enumeration_even_with_contradicting_labels(n_items, n_pairs,
                                                                                      n_classes, seed, noise):
    """``new_counts`` is the number of pairs the labels imply beyond the given ones (rows that repeat a
    pair count once; a contradictory group takes nothing away from the rest); mining finds pairs
    exactly when there are some, and the run's first line says none exactly when none is mined."""
    from siamese.data.implied import implied_note

    items, _, pairs = labelled_items(n_items, n_pairs, n_classes, seed)
    flip = np.random.default_rng(seed).random(n_pairs) < noise  # label noise: contradictions
    pairs = PairSet(pairs.left, pairs.right, np.where(flip, 1 - pairs.y, pairs.y).astype(np.float32))
    ga, gb = item_of(items, pairs.left), item_of(items, pairs.right)
    same, diff = brute_force_new_pairs(ga, gb, pairs.y)
    assert closure(pairs).new_counts(pairs.y) == (len(same), len(diff))
    mined = implied_pairs(pairs, 3.0, seed)
    a, b = item_of(items, mined.left), item_of(items, mined.right)
    keys = {(min(x, z), max(x, z), int(t)) for x, z, t in zip(a, b, mined.y)}
    assert keys <= {(*k, 1) for k in same} | {(*k, 0) for k in diff}, "a mined pair the labels do not imply"
    assert (len(mined) > 0) == bool(same or diff)
    assert ("none is added" in implied_note(pairs, 3.0)) == (len(mined) == 0)


@settings(max_examples=40, deadline=None)
@given(n_items=st.integers(4, 30), n_pairs=st.integers(4, 120), seed=st.integers(0, 2**16))
def test_no_validation_or_test_pair_is_mined(n_items, n_pairs, seed):
    """Validation and test pairs drawn from the training items (a random split, or files from one pool)
    are often implied by the training labels: none of them is ever mined."""
    items, _, pairs = labelled_items(n_items, n_pairs, 3, seed)
    cut = np.random.default_rng(seed).permutation(n_pairs)
    train, held = cut[: n_pairs // 2], cut[n_pairs // 2 :]
    part = lambda rows: PairSet(pairs.left[rows], pairs.right[rows], pairs.y[rows])  # noqa: E731
    held_out = part(held)
    mined = implied_pairs(part(train), 10.0, seed, exclude=(held_out, held_out))
    a, b = item_of(items, mined.left), item_of(items, mined.right)
    ha, hb = item_of(items, held_out.left), item_of(items, held_out.right)
    assert not {(min(x, z), max(x, z)) for x, z in zip(a, b)} & {(min(x, z), max(x, z)) for x, z in zip(ha, hb)}


@settings(max_examples=40, deadline=None)
@given(n_items=st.integers(2, 30), n_pairs=st.integers(1, 80), n_classes=st.integers(1, 5),
       seed=st.integers(0, 2**16), ratio=st.sampled_from([1.0, 3.0, 20.0]))
def test_each_class_gets_its_whole_share_whenever_the_closure_holds_it(n_items, n_pairs, n_classes, seed, ratio):
    """The count mined is the quota, whatever the seed: on a small closure (a quota near all it adds)
    drawing at random would stop short at a count that varies with the seed (and with it the shapes
    a backend compiles)."""
    from siamese.data.implied import _quota

    _, _, pairs = labelled_items(n_items, n_pairs, n_classes, seed)
    n_same, n_diff = _quota(*closure(pairs).new_counts(pairs.y), int(round(ratio * n_pairs)))
    for s in (seed, seed + 1):
        mined = implied_pairs(pairs, ratio, s)
        assert (int(mined.y.sum()), int(len(mined) - mined.y.sum())) == (n_same, n_diff)


def test_a_contradiction_in_one_group_leaves_the_others_to_mine():
    """One flipped label (a~b, b~c, a!~c) spoils its own group only: the chain d~e~f still implies d~f."""
    v = np.eye(6, dtype=np.float32)
    rows = [(0, 1, 1), (1, 2, 1), (0, 2, 0), (3, 4, 1), (4, 5, 1), (0, 3, 0)]
    pairs = PairSet(v[[r[0] for r in rows]], v[[r[1] for r in rows]], np.array([r[2] for r in rows], np.float32))
    assert closure(pairs).new_counts(pairs.y) == (1, 0)
    mined = implied_pairs(pairs, 4, seed=0)
    assert [(int(np.argmax(x)), int(np.argmax(z))) for x, z in zip(mined.left, mined.right)] in ([(3, 5)], [(5, 3)])


def test_chains_are_followed_and_each_class_is_capped_at_what_the_closure_adds():
    # Two chains a1~a2~…~a6 and b1~…~b6 (5 given "same" each), one given "different": a1!~b1.
    v = np.eye(12, dtype=np.float32)
    chain = [(i, i + 1) for i in range(5)] + [(6 + i, 7 + i) for i in range(5)]
    rows = chain + [(0, 6)]
    pairs = PairSet(v[[r[0] for r in rows]], v[[r[1] for r in rows]], np.array([1] * 10 + [0], np.float32))
    c = closure(pairs)
    assert c.counts() == (2 * 15, 36)  # C(6, 2) same pairs in each chain; 6 × 6 across
    mined = implied_pairs(pairs, 2, seed=0)  # 22 wanted: 11 same, but only 20 new same pairs exist
    assert len(mined) == 22 and int(mined.y.sum()) == 11
    got = [(int(np.argmax(x)), int(np.argmax(z)), int(t)) for x, z, t in zip(mined.left, mined.right, mined.y)]
    same = {tuple(sorted(p[:2])) for p in got if p[2] == 1}
    assert same - set(chain), "every mined same pair was a given one: the chain was not followed"
    assert all((a < 6) == (b < 6) for a, b in same)
    diff = {tuple(sorted(p[:2])) for p in got if p[2] == 0}
    assert diff - {(0, 6)} and all((a < 6) != (b < 6) for a, b in diff)
    few = implied_pairs(pairs, 100, seed=0)  # capped: 20 new same and 35 new different pairs
    assert len(few) == 20 + 35 and int(few.y.sum()) == 20


def test_a_group_that_contradicts_itself_implies_nothing():
    v = np.eye(4, dtype=np.float32)
    # a~b, b~c and a!~c: not an equivalence; only {d} is left, alone: nothing to mine.
    pairs = PairSet(v[[0, 1, 0, 2]], v[[1, 2, 2, 3]], np.array([1, 1, 0, 0], np.float32))
    c = closure(pairs)
    assert c.bad[c.group[0]] and c.counts() == (0, 0)
    assert len(implied_pairs(pairs, 10, seed=0)) == 0


def test_a_table_whose_items_do_not_repeat_implies_nothing_new():
    """Like MRPC's sentences: every pair its own two items; mining would only repeat given rows."""
    v = np.eye(8, dtype=np.float32)
    pairs = PairSet(v[[0, 2, 4, 6]], v[[1, 3, 5, 7]], np.array([1, 0, 1, 0], np.float32))
    assert len(implied_pairs(pairs, 5, seed=1)) == 0


def test_halves_when_both_classes_have_plenty():
    _, _, pairs = labelled_items(300, 400, 3, seed=2)
    mined = implied_pairs(pairs, 3, seed=2)
    assert len(mined) == 1200 and mined.y.mean() == 0.5


def test_ratio_zero_and_unlabelled_pairs():
    _, _, pairs = labelled_items(10, 20, 2, seed=0)
    assert len(implied_pairs(pairs, 0, seed=0)) == 0
    with pytest.raises(ValueError, match="labelled"):
        closure(PairSet(pairs.left, pairs.right, None))


def test_the_mined_pairs_are_seeded():
    _, _, pairs = labelled_items(30, 80, 3, seed=4)
    one, two = implied_pairs(pairs, 2, seed=7), implied_pairs(pairs, 2, seed=7)
    np.testing.assert_array_equal(one.left, two.left)
    np.testing.assert_array_equal(one.y, two.y)
    assert not np.array_equal(one.left, implied_pairs(pairs, 2, seed=8).left)


def test_training_with_implied_pairs_on_digits(make_cfg):
    """A run with training.implied_pairs trains on more pairs than the file gives (digits' images
    repeat across pairs) and validates on the same pairs as without it."""
    from siamese.data import load_dataset

    cfg = make_cfg("training.epochs=1", "training.implied_pairs=2", "training.batch_size=256")
    data = load_dataset(cfg.data, int(cfg.seed))
    fitted = fit(RunSpec.of(cfg), data)
    mined = len(implied_pairs(data.train, 2, int(cfg.seed)))  # the same seeded draw the fit made
    assert mined > len(data.train) // 2
    steps = fitted.model.optimizer.iterations.numpy()
    assert steps == int(np.ceil((len(data.train) + mined) / 256))  # given + implied pairs, one epoch
    assert len(fitted.history["val_loss"]) == 1 and fitted.mined == mined


@pytest.mark.parametrize("value", [-1, "many", True])
def test_bad_implied_pairs_value(make_cfg, value):
    with pytest.raises(ConfigError, match="training.implied_pairs"):
        RunSpec.of(make_cfg(f"training.implied_pairs={value}"))


def test_a_train_run_records_how_many_pairs_were_mined(make_cfg, store):
    from mlflow.tracking import MlflowClient

    from siamese.train import train

    metrics = train(make_cfg("training.epochs=1", "training.implied_pairs=1"))
    assert metrics["implied_pairs_mined"] > 0
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.data.metrics["implied_pairs_mined"] == metrics["implied_pairs_mined"]
    assert run.data.params["training.implied_pairs"] == "1"


@pytest.mark.parametrize("data, ratio", [("digits", 10), ("mnist5k", 10), ("mrpc-minilm", 0),
                                         ("csv data.train=a.csv data.test=b.csv", 4)])
def test_the_ratio_is_the_data_configs_and_the_command_line_wins(make_cfg, data, ratio):
    """``training.implied_pairs`` defaults to ``data.implied_pairs`` (what each data set's benchmark
    chose); a command-line value, for either key, wins."""
    first, *rest = data.split()
    assert make_cfg(f"data={first}", *rest).training.implied_pairs == ratio
    assert make_cfg(f"data={first}", *rest, "data.implied_pairs=2").training.implied_pairs == 2
    assert make_cfg(f"data={first}", *rest, "training.implied_pairs=0").training.implied_pairs == 0


@pytest.mark.parametrize("preset", ["question", "question_fix"])
def test_the_questions_script_trains_on_the_files_pairs_only(make_cfg, preset):
    assert make_cfg(f"experiment={preset}").training.implied_pairs == 0


def test_a_bad_data_ratio_is_named_as_the_data_key(make_cfg):
    with pytest.raises(ConfigError, match=r"^data\.implied_pairs=-1 "):
        RunSpec.of(make_cfg("data.implied_pairs=-1"))


def test_a_run_says_how_many_pairs_the_labels_imply(make_cfg, store, capsys, tmp_path):
    """The start of a run: on digits (images repeat) how many pairs the labels imply and how many a run
    adds, also in columns.json; on a table with no vector in two pairs, that none is added."""
    import json

    from mlflow.tracking import MlflowClient

    from siamese.data import load_dataset
    from siamese.train import train

    cfg = make_cfg("training.epochs=1", "data.implied_pairs=4")  # as a user's own table (digits' default is 0)
    train(cfg)
    data = load_dataset(cfg.data, int(cfg.seed))
    same, diff = closure(data.train).new_counts(data.train.y)
    n_same = min(2 * len(data.train), same)  # the quota: half each class, none beyond what the closure adds
    n_diff = min(4 * len(data.train) - n_same, diff)
    line = (f"training.implied_pairs=4: vectors repeat across the {len(data.train):,} training pairs, so their "
            f"labels imply {same:,} more same and {diff:,} more different pairs; each run adds up to "
            f"{n_same + n_diff:,} of them ({n_same:,} same, {n_diff:,} different)")
    added = n_same + n_diff
    assert line in capsys.readouterr().out
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    notes = json.loads(open(client.download_artifacts(run.info.run_id, "columns.json", str(tmp_path))).read())["notes"]
    assert any(n.startswith(line) for n in notes)
    assert 0 < run.data.metrics["implied_pairs_mined"] <= added  # fewer when fresh pairs are rare

    items = np.random.default_rng(0).normal(size=(400, 6)).astype(np.float32)  # 200 pairs, no vector twice
    frame = pd.DataFrame(np.hstack([items[:200], items[200:]]), columns=[f"v{i}" for i in range(12)])
    frame["class"] = np.arange(200) % 2
    frame.iloc[:160].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[160:].to_csv(tmp_path / "test.csv", index=False)
    cfg = make_cfg("data=csv", f"data.train={tmp_path / 'train.csv'}", f"data.test={tmp_path / 'test.csv'}",
                   "data.name=norepeat")
    from siamese.engine import prepare

    prepare(cfg)
    assert ("training.implied_pairs=4: the training labels imply no pair beyond the given ones, so none is "
            "added") in capsys.readouterr().out

    prepare(make_cfg("search=wide", "data.implied_pairs=4", config="tune"))  # searched: no one ratio is named
    out = capsys.readouterr().out
    assert "training.implied_pairs is searched: vectors repeat across the" in out
    assert "each trial adds its own ratio of them per given pair" in out and "training.implied_pairs=4" not in out


def test_a_study_made_before_data_implied_pairs_resumes_with_the_ratio_it_ran(make_cfg):
    """A study recorded before ``data.implied_pairs`` existed ran with ``training.implied_pairs=0.0``:
    that value resumes it (the data key only feeds the training key, so it is not compared); another
    ratio is a change, named."""
    from siamese.resume import changes, fixed_settings

    old = fixed_settings(make_cfg("training.implied_pairs=0", config="tune"), set())
    assert "data.implied_pairs" not in old and old["training.implied_pairs"] == "0"
    old["training.implied_pairs"] = "0.0"  # as the older code recorded it
    state = {"space_hash": "h", "fixed": old}
    now = fixed_settings(make_cfg("training.implied_pairs=0", config="tune"), set())
    assert changes(state, "h", {}, now) == []
    moved = changes(state, "h", {}, fixed_settings(make_cfg("data.implied_pairs=4", config="tune"), set()))
    assert moved == ["training.implied_pairs=0.0 → 4"]
    searched = fixed_settings(make_cfg("search=wide", config="tune"), {"training.implied_pairs"})
    assert not any("implied_pairs" in k for k in searched)  # searched: neither key is a fixed setting

