from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from siamese.data import (PairSet, Preprocessor, build_digits, load_dataset, read_pairs,
                          split_validation)
from siamese.errors import DataError


def write(tmp_path: Path, frame: pd.DataFrame, name: str = "t.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_reads_user_format_half_split(digits_files):
    pairs, spec = read_pairs(digits_files[0])
    assert pairs.dim == 64 and len(pairs) == 600
    assert spec.left[0] == "v0" and spec.right[0] == "v64" and spec.right[-1] == "v127"
    frame = pd.read_csv(digits_files[0])
    np.testing.assert_array_equal(pairs.right[5], frame.iloc[5, 64:128].to_numpy(np.float32))
    assert set(np.unique(pairs.y)) == {0.0, 1.0}


@pytest.mark.parametrize("labels", [[1, 0, 1, 0], [1.0, 0.0, 1.0, 0.0], [True, False, True, False], ["true", "False", "TRUE", "false"]])
def test_label_forms(tmp_path, labels):
    frame = pd.DataFrame(np.arange(16, dtype=float).reshape(4, 4), columns=["v0", "v1", "v2", "v3"])
    frame["class"] = labels
    pairs, _ = read_pairs(write(tmp_path, frame))
    np.testing.assert_array_equal(pairs.y, [1, 0, 1, 0])


def test_explicit_columns_and_prefixes(tmp_path):
    frame = pd.DataFrame({"a_x": [1.0, 2.0], "b_x": [3.0, 4.0], "a_y": [5.0, 6.0], "b_y": [7.0, 8.0], "same": [1, 0]})
    path = write(tmp_path, frame)
    pairs, spec = read_pairs(path, label="same", left="a_", right="b_")
    assert spec.left == ["a_x", "a_y"] and spec.right == ["b_x", "b_y"]
    np.testing.assert_array_equal(pairs.left, [[1, 5], [2, 6]])
    pairs, _ = read_pairs(path, label="same", left=["b_y"], right=["a_x"], ignore=["a_y", "b_x"])
    np.testing.assert_array_equal(pairs.right[:, 0], [1, 2])
    with pytest.raises(DataError, match="'b_x', 'a_y' are neither in data.left / data.right nor the label"):
        read_pairs(path, label="same", left=["b_y"], right=["a_x"])


def good_frame() -> pd.DataFrame:
    frame = pd.DataFrame(np.ones((4, 4)), columns=["v0", "v1", "v2", "v3"])
    frame["class"] = [1, 0, 1, 0]
    return frame


def mutate(col: str, row: int, value: object):
    def f(frame: pd.DataFrame) -> pd.DataFrame:
        frame[col] = frame[col].astype(object)
        frame.loc[row, col] = value
        return frame
    return f


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["v3"]), "3 feature columns is odd"),
    (mutate("v1", 2, "abc"), "column 'v1' line 4 is not numeric"),
    (mutate("v2", 1, np.nan), "column 'v2' line 3 is nan"),
    (mutate("v0", 3, np.inf), "column 'v0' line 5 is inf"),
    (mutate("class", 1, 2), "label column 'class' line 3 is 2"),
    (mutate("class", 0, -1.0), "labels must be 0 or 1"),
    (lambda f: f.assign(**{"class": 1}), "only one class"),
    (lambda f: f.drop(columns=["class"]), "label column 'class' not found"),
    (lambda f: f.iloc[:0], "no data rows"),
])
def test_bad_input_names_the_problem(tmp_path, change, message):
    path = write(tmp_path, change(good_frame()))
    with pytest.raises(DataError) as err:
        read_pairs(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_pairs(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="file is empty"):
        read_pairs(tmp_path / "empty.csv")


def test_train_test_width_mismatch(make_cfg, tmp_path):
    train = write(tmp_path, good_frame(), "train.csv")
    test = good_frame().drop(columns=["v2", "v3"])
    test_path = write(tmp_path, test, "test.csv")
    cfg = make_cfg("data=csv", f"data.train={train}", f"data.test={test_path}", "data.val_fraction=0.5")
    with pytest.raises(DataError, match="vectors are 1 wide but the training file's are 2"):
        load_dataset(cfg.data, 0)


def test_parquet_reads_like_csv(tmp_path, digits_frame):
    digits_frame.to_parquet(tmp_path / "t.parquet")
    a, _ = read_pairs(tmp_path / "t.parquet")
    b, _ = read_pairs(write(tmp_path, digits_frame))
    np.testing.assert_allclose(a.left, b.left)
    np.testing.assert_array_equal(a.y, b.y)


def test_split_is_stratified_seeded_and_head_tail_without_shuffle(digits_files):
    pairs, _ = read_pairs(digits_files[0])
    tr1, va1 = split_validation(pairs, 0.2, True, seed=3)
    tr2, va2 = split_validation(pairs, 0.2, True, seed=3)
    _, va3 = split_validation(pairs, 0.2, True, seed=4)
    np.testing.assert_array_equal(va1.left, va2.left)
    assert not np.array_equal(va1.left, va3.left)
    assert len(va1) == 120 and len(tr1) == 480
    assert abs(va1.y.mean() - pairs.y.mean()) < 0.01
    head, tail = split_validation(pairs, 0.5, False, seed=0)
    np.testing.assert_array_equal(head.left, pairs.left[:300])
    np.testing.assert_array_equal(tail.left, pairs.left[300:])


def test_preprocessing_fit_on_train_only_and_round_trips():
    rng = np.random.default_rng(0)
    train = PairSet(rng.normal(5, 2, (50, 3)).astype(np.float32), rng.normal(5, 2, (50, 3)).astype(np.float32), np.zeros(50))
    pre = Preprocessor.fit("standardize", train)
    both = np.concatenate([pre.transform(train.left), pre.transform(train.right)])
    np.testing.assert_allclose(both.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(both.std(0), 1, atol=1e-4)
    other = rng.normal(50, 2, (10, 3)).astype(np.float32)
    assert pre.transform(other).mean() > 10  # not refit on new data
    again = Preprocessor.from_dict(pre.to_dict())
    np.testing.assert_allclose(again.transform(other), pre.transform(other))
    l2 = Preprocessor.fit("l2", train).transform(other)
    np.testing.assert_allclose(np.linalg.norm(l2, axis=1), 1, rtol=1e-5)
    with pytest.raises(DataError, match="data.preprocess"):
        Preprocessor.fit("whiten", train)


def test_digits_deterministic_balanced_and_disjoint(tmp_path):
    import json

    a = build_digits(tmp_path / "a", seed=1, n_train=300, n_test=100)
    b = build_digits(tmp_path / "b", seed=1, n_train=300, n_test=100)
    assert a[0].read_bytes() == b[0].read_bytes() and a[1].read_bytes() == b[1].read_bytes()
    images = json.loads((a[0].parent / "images.json").read_text())
    assert not set(images["train"]) & set(images["test"])
    train, _ = read_pairs(a[0])
    test, _ = read_pairs(a[1])
    assert train.y.mean() == 0.5 and test.y.mean() == 0.5
    # No test vector equals any training vector: the image pools are disjoint.
    train_rows = {r.tobytes() for r in np.concatenate([train.left, train.right])}
    assert not any(r.tobytes() in train_rows for r in np.concatenate([test.left, test.right]))


def test_mrpc_absent_is_a_clear_error(make_cfg, tmp_path):
    cfg = make_cfg("data=mrpc-minilm", f"data.root_dir={tmp_path}/nowhere")
    with pytest.raises(DataError, match="file not found .*mrpc-minilm is not bundled"):
        load_dataset(cfg.data, 0)


def test_chunked_reading_matches_and_names_lines_in_later_chunks(tmp_path, digits_frame):
    path = write(tmp_path, digits_frame)
    whole, _ = read_pairs(path)
    chunked, _ = read_pairs(path, chunk_rows=7)
    np.testing.assert_array_equal(whole.buffer, chunked.buffer)
    np.testing.assert_array_equal(whole.y, chunked.y)
    assert whole.left.base is whole.buffer or whole.left.base is whole.buffer.base
    bad = digits_frame.copy()
    bad.loc[250, "v10"] = np.nan
    gz = tmp_path / "bad.csv.gz"
    bad.to_csv(gz, index=False)
    with pytest.raises(DataError, match="column 'v10' line 252 is nan"):
        read_pairs(gz, chunk_rows=100)
    (tmp_path / "blank.csv").write_text(path.read_text() + "\n\n")
    assert len(read_pairs(tmp_path / "blank.csv")[0]) == len(whole)


def test_in_place_split_and_preprocessing_equal_the_copying_ones(digits_files):
    for shuffle in (True, False):
        pairs, _ = read_pairs(digits_files[0])
        copy_train, copy_val = split_validation(pairs, 0.2, shuffle, seed=5)
        train, val = split_validation(pairs, 0.2, shuffle, seed=5, inplace=True)
        np.testing.assert_array_equal(train.left, copy_train.left)
        np.testing.assert_array_equal(val.right, copy_val.right)
        np.testing.assert_array_equal(val.y, copy_val.y)
        assert np.shares_memory(train.left, pairs.buffer) and np.shares_memory(val.left, pairs.buffer)
        for kind in ("standardize", "l2"):
            pre = Preprocessor.fit(kind, train)
            expected = pre.apply(val)
            got = pre.apply_inplace(PairSet.of(val.buffer.copy(), val.y))
            np.testing.assert_array_equal(got.left, expected.left)
            np.testing.assert_array_equal(got.right, expected.right)


def test_parquet_errors_name_the_column_and_line(tmp_path, digits_frame):
    bad = digits_frame.copy()
    bad.loc[40, "v70"] = np.inf
    bad.to_parquet(tmp_path / "inf.parquet", row_group_size=25)
    with pytest.raises(DataError, match="column 'v70' line 42 is inf"):
        read_pairs(tmp_path / "inf.parquet")
    text = digits_frame.astype({"v3": str})
    text.to_parquet(tmp_path / "text.parquet")
    with pytest.raises(DataError, match="column 'v3' is (large_)?string, not numeric"):
        read_pairs(tmp_path / "text.parquet")
    wrong = digits_frame.assign(**{"class": 3})
    wrong.to_parquet(tmp_path / "label.parquet")
    with pytest.raises(DataError, match="label column 'class' line 2 is 3"):
        read_pairs(tmp_path / "label.parquet")
