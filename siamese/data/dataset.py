"""The :class:`Dataset` a training job uses, and :func:`load_dataset`, which builds it from a config.

:func:`data_files` finds (or builds, for embedded data) the train and test files; loading reads
them by column name, checks classes and leakage, splits and preprocesses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siamese.data.digits import build_digits
from siamese.data.files import TableFormat, check_file, file_sha256
from siamese.data.identity import leakage
from siamese.data.pairs import CHUNK, ColumnSpec, PairSet
from siamese.data.split import Preprocessor, check_class_counts, split_validation
from siamese.data.tables import read_table
from siamese.errors import DataError
from siamese.paths import resolve


@dataclass
class Dataset:
    """Everything a training job needs from the data config.

    Attributes:
        notes: what a user should read once: the columns taken, columns dropped, leakage.
        leakage: ``test_pairs_seen_in_train`` and ``val_pairs_duplicated_in_train`` (see
            :func:`siamese.data.identity.leakage`), logged as metrics.
        feature_scale: the largest absolute feature value in the training file, before
            preprocessing (for the hint when training diverges).
    """

    name: str
    train: PairSet
    val: PairSet
    test: PairSet
    preprocessor: Preprocessor
    columns: ColumnSpec
    files: dict[str, Path]
    hashes: dict[str, str]
    notes: list[str] = field(default_factory=list)
    leakage: dict[str, int] = field(default_factory=dict)
    feature_scale: float = 0.0


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
        check_file(path)
    return train, test


def _max_abs(pairs: PairSet) -> float:
    a = pairs.buffer if pairs.buffer is not None else np.hstack([pairs.left, pairs.right])
    return max((float(np.abs(a[s : s + CHUNK]).max()) for s in range(0, len(a), CHUNK)), default=0.0)


def _notes(spec: ColumnSpec, dropped: dict[str, list[str]], leaks: dict[str, int], n_val: int, n_test: int) -> list[str]:
    notes = [f"columns: {spec.describe()}"]
    for path, names in dropped.items():
        if names:
            notes.append(f"note: {path}: dropped column(s) {', '.join(repr(n) for n in names)} "
                         "(a saved index or listed in data.ignore)")
    seen, dup = leaks["test_pairs_seen_in_train"], leaks["val_pairs_duplicated_in_train"]
    if seen or dup:
        notes.append(f"warning: leakage: {seen} of {n_test} test pairs have both sides in the training file, "
                     f"{dup} of {n_val} validation pairs repeat a training pair (logged as test_pairs_seen_in_train, "
                     "val_pairs_duplicated_in_train)")
    return notes


def load_dataset(cfg: Any, seed: int) -> Dataset:
    """Read, validate, split and preprocess the data a config names.

    The test file is read by the training file's column names; before anything trains, each
    class must appear ``data.min_class_count`` times in train and validation, and the test file
    must not be the training file.

    Args:
        cfg: the ``data`` config node.
        seed: the run's seed, for the validation split.

    Raises:
        DataError: naming the file, column, count or setting at fault.
    """
    train_path, test_path = data_files(cfg)
    hashes = {"train": file_sha256(train_path), "test": file_sha256(test_path)}
    if hashes["train"] == hashes["test"]:
        raise DataError(f"data.test {test_path} is the training file {train_path} (same sha256 {hashes['test'][:12]}…): "
                        "test scores would be training scores; pass a held-out test file")
    options = {"ignore": list(cfg.get("ignore") or []), "fmt": TableFormat(cfg.get("sep"), cfg.get("decimal"))}
    full = read_table(train_path, cfg.label, cfg.get("left"), cfg.get("right"), **options)
    spec = full.spec
    test = read_table(test_path, cfg.label, expect=spec, **options)
    minimum = int(cfg.get("min_class_count", 5))
    check_class_counts(str(train_path), full.pairs, None, minimum, cfg.val_fraction)
    scale = _max_abs(full.pairs)
    # In place: the features are held once, whatever the table's size.
    train, val = split_validation(full.pairs, cfg.val_fraction, cfg.shuffle, seed, inplace=True)
    check_class_counts(str(train_path), train, val, minimum, cfg.val_fraction)
    leaks = leakage(train, val, test.pairs)  # on the raw values: identity before any transform
    pre = Preprocessor.fit(cfg.preprocess, train)
    return Dataset(
        name=cfg.name,
        train=pre.apply_inplace(train),
        val=pre.apply_inplace(val),
        test=pre.apply_inplace(test.pairs),
        preprocessor=pre,
        columns=spec,
        files={"train": train_path, "test": test_path},
        hashes=hashes,
        notes=_notes(spec, {str(train_path): full.dropped, str(test_path): test.dropped}, leaks, len(val), len(test.pairs)),
        leakage=leaks,
        feature_scale=scale,
    )
