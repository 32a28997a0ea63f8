"""The :class:`Dataset` a training job uses, and :func:`load_dataset`, which builds it from a config.

:func:`data_files` finds (or builds, for embedded data) the train and test files; loading reads,
validates, splits and preprocesses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siamese.data.digits import VAL_FILE, build_digits
from siamese.data.identity import pair_ids, pairs_seen
from siamese.data.pairs import ColumnSpec, PairSet
from siamese.data.split import Preprocessor, apply_split, plan_split
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
    # test_pairs_seen_in_train: test pairs with a side identical to a vector of the training file
    # (or validation file); val_pairs_seen_in_train: validation pairs with a side in a training pair.
    overlap: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # one line each, for the task to print once


def data_files(cfg: Any) -> tuple[Path, Path]:
    """The train and test files a data config points at, building embedded data if needed."""
    if cfg.get("source") == "digits":
        fraction = float(cfg.val_fraction)
        if not 0.0 < fraction < 1.0:
            raise DataError(f"data.val_fraction must be in (0, 1), got {fraction}")
        return build_digits(cfg.cache_dir, seed=cfg.data_seed, n_train=cfg.n_train, n_test=cfg.n_test,
                            val_fraction=fraction)
    if not cfg.get("train") or not cfg.get("test"):
        raise DataError("data.train and data.test must both be set (paths to CSV or Parquet files)")
    train, test = resolve(cfg.train), resolve(cfg.test)
    for path in (train, test):
        if not path.exists():
            hint = f" ({cfg.missing_hint})" if cfg.get("missing_hint") else ""
            raise DataError(f"{path}: file not found{hint}")
    return train, test


def validation_file(cfg: Any) -> Path | None:
    """The data's own validation file: the embedded digits' (its own image pool), or ``data.val``."""
    if cfg.get("source") == "digits":
        return data_files(cfg)[0].parent / VAL_FILE
    if not cfg.get("val"):
        return None
    path = resolve(cfg.val)
    if not path.exists():
        raise DataError(f"{path}: file not found (data.val)")
    return path


def _read(path: Path, cfg: Any, like: tuple[Path, PairSet] | None = None) -> tuple[PairSet, ColumnSpec]:
    """A labelled table of the data config; as wide as ``like``'s pairs when given."""
    pairs, spec = read_pairs(path, cfg.label, cfg.get("left"), cfg.get("right"))
    if like is not None and pairs.dim != like[1].dim:
        raise DataError(f"{path}: vectors are {pairs.dim} wide but {like[0]} has {like[1].dim}; widths must match")
    return pairs, spec


def load_dataset(cfg: Any, seed: int) -> Dataset:
    """Read, validate, split and preprocess the data a config names.

    Validation is the data's own file when it has one (:func:`validation_file`), else split from
    the training file as ``data.split`` says (see :func:`siamese.data.split.split_validation`).

    Args:
        cfg: the ``data`` node.
        seed: the run's seed, for the validation split.
    """
    train_path, test_path = data_files(cfg)
    val_path = validation_file(cfg)
    full, spec = _read(train_path, cfg)
    test, _ = _read(test_path, cfg, (train_path, full))
    given = _read(val_path, cfg, (train_path, full))[0] if val_path else None
    ids = pair_ids(full, test, *([given] if given is not None else []))
    notes = []
    if given is not None:
        train, val, train_ids, val_ids = full, given, ids[0], ids[2]
        seen = np.concatenate([*ids[0], *ids[2]])
    else:
        plan = plan_split(full, cfg.val_fraction, cfg.shuffle, seed, str(cfg.get("split", "random")), ids[0])
        train_ids = tuple(side[plan.train] for side in ids[0])
        val_ids = tuple(side[plan.val] for side in ids[0])
        seen = np.concatenate(ids[0])
        if plan.grouped:
            notes.append(_grouped_note(cfg, plan.dropped, len(full), len(plan.val)))
        # In place: the features are held once, whatever the table's size.
        train, val = apply_split(full, plan, inplace=True)
    overlap = {"test_pairs_seen_in_train": float(pairs_seen(ids[1], seen)),
               "val_pairs_seen_in_train": float(pairs_seen(val_ids, np.concatenate(train_ids)))}
    pre = Preprocessor.fit(cfg.preprocess, train)
    files = {"train": train_path, "test": test_path, **({"val": val_path} if val_path else {})}
    return Dataset(
        name=cfg.name,
        train=pre.apply_inplace(train),
        val=pre.apply_inplace(val),
        test=pre.apply_inplace(test),
        preprocessor=pre,
        columns=spec,
        files=files,
        hashes={k: file_sha256(p) for k, p in files.items()},
        overlap=overlap,
        notes=notes,
    )


def _grouped_note(cfg: Any, dropped: int, n: int, n_val: int) -> str:
    why = "vectors repeat across rows, so " if cfg.get("split", "random") == "auto" else ""
    left_out = (f"; {dropped} of {n} pairs join a training vector to a validation vector and are left out"
                if dropped else "")
    return (f"data.split={cfg.get('split')}: {why}the validation split keeps every exact vector on one side "
            f"({n_val} validation pairs{left_out}; data.split=random for the plain split)")
