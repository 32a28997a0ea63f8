"""The :class:`Dataset` a training job uses, and :func:`load_dataset`, which builds it from a config.

:func:`data_files` finds (or builds, for embedded data) the train and test files; loading reads,
validates, splits and preprocesses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siamese.data.digits import build_digits
from siamese.data.pairs import ColumnSpec, PairSet
from siamese.data.split import Preprocessor, split_validation
from siamese.data.tables import file_sha256, read_pairs
from siamese.errors import DataError
from siamese.paths import resolve


@dataclass
class Dataset:
    """Everything a training job needs from the data config."""

    name: str
    train: PairSet
    val: PairSet
    test: PairSet
    preprocessor: Preprocessor
    columns: ColumnSpec
    files: dict[str, Path]
    hashes: dict[str, str]


def data_files(cfg: Any) -> tuple[Path, Path]:
    """The train and test files a data config points at, building embedded data if needed."""
    if cfg.get("source") == "digits":
        return build_digits(cfg.cache_dir, seed=cfg.data_seed, n_train=cfg.n_train, n_test=cfg.n_test)
    if not cfg.get("train") or not cfg.get("test"):
        raise DataError("data.train and data.test must both be set (paths to CSV or Parquet files)")
    train, test = resolve(cfg.train), resolve(cfg.test)
    for path in (train, test):
        if not path.exists():
            hint = f" ({cfg.missing_hint})" if cfg.get("missing_hint") else ""
            raise DataError(f"{path}: file not found{hint}")
    return train, test


def load_dataset(cfg: Any, seed: int) -> Dataset:
    """Read, validate, split and preprocess the data a config names.

    Args:
        cfg: the ``data`` config node.
        seed: the run's seed, for the validation split.
    """
    train_path, test_path = data_files(cfg)
    full, spec = read_pairs(train_path, cfg.label, cfg.get("left"), cfg.get("right"))
    test, _ = read_pairs(test_path, cfg.label, cfg.get("left"), cfg.get("right"))
    if test.dim != full.dim:
        raise DataError(
            f"{test_path}: vectors are {test.dim} wide but {train_path} has {full.dim}; widths must match"
        )
    # In place: the features are held once, whatever the table's size.
    train, val = split_validation(full, cfg.val_fraction, cfg.shuffle, seed, inplace=True)
    pre = Preprocessor.fit(cfg.preprocess, train)
    return Dataset(
        name=cfg.name,
        train=pre.apply_inplace(train),
        val=pre.apply_inplace(val),
        test=pre.apply_inplace(test),
        preprocessor=pre,
        columns=spec,
        files={"train": train_path, "test": test_path},
        hashes={"train": file_sha256(train_path), "test": file_sha256(test_path)},
    )
