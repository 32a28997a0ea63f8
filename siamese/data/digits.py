"""The embedded digits data: same/different-digit pairs from scikit-learn's bundled digits.

:func:`build_digits` writes train, validation and test CSV files in the user's pair-table format,
so the embedded data goes through the same reader as any other. Each file's pairs come from its own
pool of images: validation is as far from training as test is (no image on both sides of either cut).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from siamese.errors import DataError
from siamese.paths import resolve


def _write_atomic_csv(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, path)


def _digit_pairs(images: np.ndarray, labels: np.ndarray, n_pairs: int, rng: np.random.Generator) -> pd.DataFrame:
    """Balanced same/different-digit pairs drawn from one pool of images."""
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    classes = np.array(sorted(by_class))
    n_same = n_pairs // 2
    rows_l, rows_r = [], []
    for _ in range(n_same):
        c = rng.choice(classes)
        a, b = rng.choice(by_class[c], size=2, replace=False)
        rows_l.append(a)
        rows_r.append(b)
    for _ in range(n_pairs - n_same):
        c1, c2 = rng.choice(classes, size=2, replace=False)
        rows_l.append(rng.choice(by_class[c1]))
        rows_r.append(rng.choice(by_class[c2]))
    y = np.r_[np.ones(n_same), np.zeros(n_pairs - n_same)]
    order = rng.permutation(n_pairs)
    feats = np.hstack([images[rows_l], images[rows_r]])[order]
    frame = pd.DataFrame(feats, columns=[f"v{i}" for i in range(feats.shape[1])])
    frame["class"] = y[order]
    return frame


VAL_FILE = "val.csv"
VERSION = 2  # in the cache folder's name: files written by another layout are never reused


def build_digits(cache_dir: str | os.PathLike, seed: int = 0, n_train: int = 4000, n_test: int = 1000,
                 test_images: float = 0.3, val_fraction: float = 0.2) -> tuple[Path, Path]:
    """Write same/different-digit pairs from scikit-learn's bundled digits, in the user's format.

    Images are split into disjoint pools first: ``test_images`` of them for test, then
    ``val_fraction`` of the rest for validation. ``train.csv`` holds ``n_train`` pairs of training
    images, ``val.csv`` (:data:`VAL_FILE`, beside it) ``n_train · val_fraction / (1 − val_fraction)``
    pairs of validation images (so validation is ``val_fraction`` of the two), ``test.csv`` ``n_test``
    pairs of test images. Each file draws from its own random stream, so the test file depends only
    on ``seed``, ``n_test`` and ``test_images``. Deterministic; reused from ``cache_dir`` when present.

    Returns:
        Paths of the train and test CSV files (the validation file is ``train.parent / VAL_FILE``).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    folder = resolve(cache_dir) / f"digits-v{VERSION}-s{seed}-{n_train}-{n_test}-{test_images}-{val_fraction}"
    train_path, val_path, test_path = folder / "train.csv", folder / VAL_FILE, folder / "test.csv"
    if train_path.exists() and val_path.exists() and test_path.exists():
        return train_path, test_path
    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    idx_train, idx_test = train_test_split(
        np.arange(len(images)), test_size=test_images, random_state=seed, stratify=digits.target
    )
    try:
        idx_train, idx_val = train_test_split(idx_train, test_size=val_fraction, random_state=seed,
                                              stratify=digits.target[idx_train])
    except ValueError:
        idx_val = np.empty(0, np.int64)
    for pool, idx in (("training", idx_train), ("validation", idx_val)):
        fewest = min(np.sum(digits.target[idx] == c) for c in range(10)) if len(idx) else 0
        if fewest < 2:  # a "same" pair needs two images of one digit
            raise DataError(f"data.val_fraction={val_fraction} leaves the digits' {pool} pool {fewest} image(s) of some "
                            "digit (2 are needed for a pair); use a data.val_fraction nearer 0.2")
    folder.mkdir(parents=True, exist_ok=True)
    n_val = int(round(n_train * val_fraction / (1.0 - val_fraction)))
    for path, idx, n, stream in ((train_path, idx_train, n_train, 0), (val_path, idx_val, n_val, 1),
                                 (test_path, idx_test, n_test, 2)):
        rng = np.random.default_rng([seed, stream])
        _write_atomic_csv(_digit_pairs(images[idx], digits.target[idx], n, rng), path)
    pools = {"train": idx_train, "val": idx_val, "test": idx_test}
    (folder / "images.json").write_text(json.dumps({k: sorted(map(int, v)) for k, v in pools.items()}))
    return train_path, test_path
