"""The second shared data set, ``data=mnist5k``: 784 raw pixels a side, images reused across pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siamese.data import load_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist5k-pixels"

shared = pytest.mark.skipif(not SHARED.exists(), reason="the team's shared datasets are not beside this checkout")


def sides(pairs) -> set[bytes]:
    return {r.tobytes() for r in np.concatenate([pairs.left, pairs.right])}


@pytest.mark.slow
@shared
def test_mnist5k_validation_keeps_each_image_on_one_side(make_cfg):
    data = load_dataset(make_cfg("data=mnist5k", small=False).data, 0)
    assert data.name == "mnist5k" and data.train.dim == 784 and len(data.test) == 2000
    assert not sides(data.train) & sides(data.val)
    assert {k: data.overlap[k] for k in ("test_pairs_seen_in_train", "val_pairs_seen_in_train")} == {"test_pairs_seen_in_train": 0.0, "val_pairs_seen_in_train": 0.0}
    (note,) = [n for n in data.notes if n.startswith("data.split")]
    assert note.startswith("data.split=auto: vectors repeat across rows")
    assert 1000 <= len(data.val) <= 1300 and len(data.train) + len(data.val) < 6000
    leaky = load_dataset(make_cfg("data=mnist5k", "data.split=random", small=False).data, 0)
    assert len(leaky.train) == 4800 and leaky.overlap["val_pairs_seen_in_train"] > 500


@pytest.mark.slow
@shared
def test_mnist5k_trains_like_any_data_set(make_cfg):
    from siamese.train import train

    metrics = train(make_cfg("data=mnist5k", "training.epochs=1", "training.verbose=0", small=False))
    assert metrics["test_pairs_seen_in_train"] == 0 and 0.5 < metrics["test_auc"] <= 1.0


def test_mnist5k_absent_is_a_clear_error(make_cfg, tmp_path):
    from siamese.errors import DataError

    with pytest.raises(DataError, match="file not found .*mnist5k is not bundled"):
        load_dataset(make_cfg("data=mnist5k", f"data.root_dir={tmp_path}/nowhere", small=False).data, 0)
