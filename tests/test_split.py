"""Validation that mirrors test: vector identity, the grouped split, digits' own validation pool,
and the count of test pairs that reuse a training vector."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from siamese.data import PairSet, build_digits, load_dataset, read_pairs, split_validation
from siamese.data.groups import grouped_split
from siamese.data.identity import pair_ids, vector_ids
from siamese.data.split import apply_split, plan_split
from siamese.errors import ConfigError


def items_table(n_items: int, n_pairs: int, dim: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of items drawn from a pool (each item in several pairs), as a user's table often is."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    a, b = rng.integers(0, n_items, n_pairs), rng.integers(0, n_items, n_pairs)
    return items[a], items[b], rng.integers(0, 2, n_pairs).astype(np.float32)


def sentence_table(n_pairs: int, reuse: float = 0.1, dim: int = 6, seed: int = 0):
    """Mostly fresh items, a few reused in a second pair (small groups, like MRPC's sentences)."""
    rng = np.random.default_rng(seed)
    left = rng.normal(size=(n_pairs, dim)).astype(np.float32)
    right = rng.normal(size=(n_pairs, dim)).astype(np.float32)
    again = rng.choice(n_pairs, int(reuse * n_pairs), replace=False)
    right[again] = left[rng.permutation(again)]
    return left, right, rng.integers(0, 2, n_pairs).astype(np.float32)


def as_buffer(left, right, y) -> PairSet:
    return PairSet.of(np.ascontiguousarray(np.hstack([left, right])), y.copy())


def sides(pairs: PairSet) -> set[bytes]:
    return {r.tobytes() for r in np.concatenate([pairs.left, pairs.right])}


def test_vector_ids_match_exact_rows_across_blocks_and_strided_views():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 4)).astype(np.float32)
    b = np.vstack([a[3], rng.normal(size=(1, 4)).astype(np.float32), a[0], -0.0 * a[1]])
    b[3] = 0.0
    a[4] = -0.0  # -0.0 and 0.0 are one value
    buffer = np.hstack([a, a[::-1]])  # the halves are strided views, as a pair buffer's are
    ia, ib, left, right = vector_ids(a, b, buffer[:, :4], buffer[:, 4:])
    assert len(set(ia)) == 5
    assert ib[0] == ia[3] and ib[2] == ia[0] and ib[3] == ia[4] and ib[1] not in set(ia)
    np.testing.assert_array_equal(left, ia)
    np.testing.assert_array_equal(right, ia[::-1])


@pytest.mark.parametrize("table, dropped", [(lambda: sentence_table(1000), False),
                                            (lambda: items_table(300, 1000), True)])
def test_grouped_split_keeps_every_vector_on_one_side(table, dropped):
    left, right, y = table()
    pairs = as_buffer(left, right, y)
    ids = pair_ids(pairs)[0]
    plan = plan_split(pairs, 0.2, True, 7, "grouped", ids)
    train, val = apply_split(pairs, plan)
    assert not sides(train) & sides(val)
    assert 170 <= len(val) <= 205  # about 20%, whatever the groups allow
    assert abs(val.y.mean() - y.mean()) < 0.06  # roughly stratified
    assert plan.grouped and len(train) + len(val) + plan.dropped == 1000
    assert (plan.dropped > 0) == dropped  # small groups move whole; one big group must be cut
    if dropped:  # the left-out pairs are exactly those joining a training vector to a validation one
        out = np.setdiff1d(np.arange(1000), np.concatenate([plan.train, plan.val]))
        val_ids = set(ids[0][plan.val]) | set(ids[1][plan.val])
        assert all((ids[0][i] in val_ids) != (ids[1][i] in val_ids) for i in out)
        assert plan.dropped < 0.3 * 1000  # a grown region, not a random cut (~64% of pairs lost)
    again = plan_split(pairs, 0.2, True, 7, "grouped", ids)
    other = plan_split(pairs, 0.2, True, 8, "grouped", ids)
    np.testing.assert_array_equal(plan.val, again.val)
    assert not np.array_equal(plan.val, other.val)


def test_a_random_split_leaks_repeated_vectors_and_auto_groups_only_when_they_repeat():
    left, right, y = items_table(300, 1000)
    pairs = as_buffer(left, right, y)
    ids = pair_ids(pairs)[0]
    train, val = split_validation(pairs, 0.2, True, 3, mode="random", ids=ids)
    assert sides(train) & sides(val)  # today's split: the same vector on both sides
    assert plan_split(pairs, 0.2, True, 3, "auto", ids).grouped
    fresh = as_buffer(*sentence_table(1000, reuse=0.0))
    plan = plan_split(fresh, 0.2, True, 3, "auto", pair_ids(fresh)[0])
    assert not plan.grouped
    np.testing.assert_array_equal(plan.val, plan_split(fresh, 0.2, True, 3, "random").val)


def test_shuffle_false_is_head_tail_and_bad_split_settings_are_config_errors():
    left, right, y = items_table(50, 200)
    pairs = as_buffer(left, right, y)
    ids = pair_ids(pairs)[0]
    plan = plan_split(pairs, 0.25, False, 0, "auto", ids)
    np.testing.assert_array_equal(plan.val, np.arange(150, 200))
    with pytest.raises(ConfigError, match="data.split=grouped needs data.shuffle=true"):
        plan_split(pairs, 0.25, False, 0, "grouped", ids)
    with pytest.raises(ConfigError, match=r"data.split='groups' is not one of \['auto', 'grouped', 'random'\]"):
        plan_split(pairs, 0.25, True, 0, "groups", ids)


def test_in_place_grouped_split_with_left_out_pairs_equals_the_copying_one():
    left, right, y = items_table(200, 800)
    copy_train, copy_val = split_validation(as_buffer(left, right, y), 0.2, True, 5, mode="grouped",
                                            ids=pair_ids(as_buffer(left, right, y))[0])
    pairs = as_buffer(left, right, y)
    train, val = split_validation(pairs, 0.2, True, 5, inplace=True, mode="grouped", ids=pair_ids(pairs)[0])
    assert len(train) + len(val) < 800
    for a, b in ((train, copy_train), (val, copy_val)):
        np.testing.assert_array_equal(a.left, b.left)
        np.testing.assert_array_equal(a.right, b.right)
        np.testing.assert_array_equal(a.y, b.y)
        assert np.shares_memory(a.left, pairs.buffer)


def test_grouped_split_of_many_duplicated_pairs_keeps_duplicates_together():
    left, right, y = sentence_table(300, reuse=0.0)
    twice = [np.concatenate([a, a]) for a in (left, right, y)]
    ids = pair_ids(as_buffer(*twice))[0]
    cut = grouped_split(ids[0], ids[1], twice[2], 120, 0)
    in_val = np.zeros(600, bool)
    in_val[cut.val] = True
    np.testing.assert_array_equal(in_val[:300], in_val[300:])


def write_table(path, left, right, y):
    frame = pd.DataFrame(np.hstack([left, right]), columns=[f"v{i}" for i in range(2 * left.shape[1])])
    frame["class"] = y
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def leaky_tables(tmp_path):
    """A user's train table whose items repeat, and a test table with 7 pairs reusing a training item."""
    left, right, y = items_table(300, 1000, seed=2)
    t_left, t_right, t_y = items_table(100, 60, seed=3)
    t_right[:7] = left[100:107]
    return write_table(tmp_path / "train.csv", left, right, y), write_table(tmp_path / "test.csv", t_left, t_right, t_y)


def split_notes(data) -> list[str]:
    """The data's notes about its validation split (the others name columns and leakage)."""
    return [n for n in data.notes if n.startswith("data.split")]


def test_user_table_auto_groups_says_so_and_counts_test_pairs_seen_in_train(make_cfg, leaky_tables):
    train_path, test_path = leaky_tables
    data = load_dataset(make_cfg("data=csv", f"data.train={train_path}", f"data.test={test_path}").data, 0)
    assert {k: data.overlap[k] for k in ("test_pairs_seen_in_train", "val_pairs_seen_in_train")} == {"test_pairs_seen_in_train": 7.0, "val_pairs_seen_in_train": 0.0}
    (note,) = split_notes(data)
    assert note.startswith("data.split=auto: vectors repeat across rows") and "left out" in note
    assert not sides(data.train) & sides(data.val)
    plain = load_dataset(make_cfg("data=csv", f"data.train={train_path}", f"data.test={test_path}",
                                  "data.split=random").data, 0)
    assert split_notes(plain) == [] and plain.overlap["val_pairs_seen_in_train"] > 100
    head = load_dataset(make_cfg("data=csv", f"data.train={train_path}", f"data.test={test_path}",
                                 "data.shuffle=false").data, 0)
    assert len(head.train) == 800 and split_notes(head) == []


def test_a_given_validation_file_is_used_as_it_is(make_cfg, leaky_tables, tmp_path):
    train_path, test_path = leaky_tables
    val_path = write_table(tmp_path / "val.csv", *items_table(40, 90, seed=9))
    data = load_dataset(make_cfg("data=csv", f"data.train={train_path}", f"data.test={test_path}",
                                 f"data.val={val_path}").data, 0)
    assert len(data.train) == 1000 and len(data.val) == 90
    assert data.files["val"] == val_path and len(data.hashes["val"]) == 64


def test_digits_validation_comes_from_its_own_image_pool(tmp_path):
    train_path, test_path = build_digits(tmp_path / "a", seed=1, n_train=400, n_test=100, val_fraction=0.2)
    folder = train_path.parent
    images = json.loads((folder / "images.json").read_text())
    assert not set(images["val"]) & set(images["train"]) and not set(images["val"]) & set(images["test"])
    train, val, test = (read_pairs(p)[0] for p in (train_path, folder / "val.csv", test_path))
    assert len(train) == 400 and len(val) == 100 and val.y.mean() == 0.5
    assert not sides(train) & sides(val) and not (sides(train) | sides(val)) & sides(test)
    # The test file depends on neither the validation share nor the training size.
    _, other_test = build_digits(tmp_path / "b", seed=1, n_train=200, n_test=100, val_fraction=0.3)
    assert other_test.read_bytes() == test_path.read_bytes()


def test_digits_dataset_has_no_leak_and_every_run_logs_the_overlap(make_cfg, store, leaky_tables, capsys):
    from siamese.train import train

    data = load_dataset(make_cfg().data, 0)
    assert {k: data.overlap[k] for k in ("test_pairs_seen_in_train", "val_pairs_seen_in_train")} == {"test_pairs_seen_in_train": 0.0, "val_pairs_seen_in_train": 0.0}
    assert len(data.train) == 600 and len(data.val) == 150 and data.files["val"].name == "val.csv"
    train_path, test_path = leaky_tables
    train(make_cfg("data=csv", f"data.train={train_path}", f"data.test={test_path}", "training.epochs=1"))
    out = capsys.readouterr().out
    assert "warning: leakage: 7 of 60 test pairs have a side identical to a training vector" in out
    assert "data.split=auto: vectors repeat across rows" in out
    (run,) = MlflowClient(f"sqlite:///{store}/mlflow.db").search_runs(
        [mlflow.get_experiment_by_name("csv").experiment_id])
    assert run.data.metrics["test_pairs_seen_in_train"] == 7 and run.data.metrics["val_pairs_seen_in_train"] == 0
