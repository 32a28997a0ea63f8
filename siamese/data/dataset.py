"""The :class:`Dataset` a training job uses, and :func:`load_dataset`, which builds it from a config.

:func:`data_files` finds (or builds, for embedded data) the train and test files; loading reads
them by column name, checks classes and leakage, splits (or takes the data's own validation file)
and preprocesses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siamese.data.digits import VAL_FILE, build_digits
from siamese.data.files import TableFormat, check_file, file_sha256
from siamese.data.identity import pair_ids, pairs_known, pairs_repeated, pairs_seen
from siamese.data.pairs import CHUNK, ColumnSpec, PairSet
from siamese.data.split import Preprocessor, apply_split, check_class_counts, plan_split
from siamese.data.tables import read_table
from siamese.errors import DataError
from siamese.paths import resolve


@dataclass
class Dataset:
    """Everything a training job needs from the data config.

    Attributes:
        overlap: what validation and test share with training, logged as metrics by every run:
            ``test_pairs_seen_in_train`` (test pairs with a side identical to a vector of the
            training data), ``test_pairs_both_sides_in_train`` (both sides), ``val_pairs_seen_in_train``
            (validation pairs with a side in a training pair), ``val_pairs_duplicated_in_train``
            (validation pairs equal to a training pair, either order).
        notes: what a user should read once: the columns taken, columns dropped, the split, leakage.
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
    overlap: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    feature_scale: float = 0.0


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
        check_file(path)
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
    check_file(path)
    return path


def _max_abs(pairs: PairSet) -> float:
    a = pairs.buffer if pairs.buffer is not None else np.hstack([pairs.left, pairs.right])
    return max((float(np.abs(a[s : s + CHUNK]).max()) for s in range(0, len(a), CHUNK)), default=0.0)


def _notes(spec: ColumnSpec, dropped: dict[str, list[str]], overlap: dict[str, float], n_val: int,
           n_test: int) -> list[str]:
    notes = [f"columns: {spec.describe()}"]
    for path, names in dropped.items():
        if names:
            notes.append(f"note: {path}: dropped column(s) {', '.join(repr(n) for n in names)} "
                         "(a saved index or listed in data.ignore)")
    seen, both = int(overlap["test_pairs_seen_in_train"]), int(overlap["test_pairs_both_sides_in_train"])
    dup = int(overlap["val_pairs_duplicated_in_train"])
    if seen or dup:
        # What each count puts at risk: test seen in training flatters the reported figures; validation pairs
        # that are training pairs flatter the figures trials are chosen on (a grouped split keeps them apart).
        risks = [*(["test figures may flatter the model"] if seen else []),
                 *(["validation scores pairs the model trained on (data.split=grouped keeps them apart)"] if dup else [])]
        notes.append(f"warning: leakage: {seen} of {n_test} test pairs have a side identical to a training vector "
                     f"({both} both sides), {dup} of {n_val} validation pairs repeat a training pair (logged as "
                     "test_pairs_seen_in_train, test_pairs_both_sides_in_train, val_pairs_duplicated_in_train): "
                     + "; ".join(risks))
    return notes


def load_dataset(cfg: Any, seed: int) -> Dataset:
    """Read, validate, split and preprocess the data a config names.

    The test (and validation) file is read by the training file's column names. Validation is the
    data's own file when it has one (:func:`validation_file`), else split from the training file
    as ``data.split`` says (see :func:`siamese.data.split.plan_split`). Before anything trains,
    each class must appear ``data.min_class_count`` times in train and validation, and the test
    file must not be the training file.

    Args:
        cfg: the ``data`` config node.
        seed: the run's seed, for the validation split.

    Raises:
        DataError: naming the file, column, count or setting at fault.
    """
    train_path, test_path = data_files(cfg)
    val_path = validation_file(cfg)
    files = {"train": train_path, "test": test_path, **({"val": val_path} if val_path else {})}
    hashes = {k: file_sha256(p) for k, p in files.items()}
    if hashes["train"] == hashes["test"]:
        raise DataError(f"data.test {test_path} is the training file {train_path} (same sha256 {hashes['test'][:12]}…): "
                        "test scores would be training scores; pass a held-out test file")
    options = {"ignore": list(cfg.get("ignore") or []), "fmt": TableFormat(cfg.get("sep"), cfg.get("decimal"))}
    full = read_table(train_path, cfg.label, cfg.get("left"), cfg.get("right"), **options)
    spec = full.spec
    test = read_table(test_path, cfg.label, expect=spec, **options)
    given = read_table(val_path, cfg.label, expect=spec, **options) if val_path else None
    minimum = int(cfg.get("min_class_count", 5))
    scale = _max_abs(full.pairs)
    ids = pair_ids(full.pairs, test.pairs, *([given.pairs] if given is not None else []))
    split_notes = []
    if given is not None:
        train, val, train_ids, val_ids = full.pairs, given.pairs, ids[0], ids[2]
        seen = np.concatenate([*ids[0], *ids[2]])
    else:
        check_class_counts(str(train_path), full.pairs, None, minimum, cfg.val_fraction)
        plan = plan_split(full.pairs, cfg.val_fraction, cfg.shuffle, seed, str(cfg.get("split", "random")), ids[0])
        train_ids = tuple(side[plan.train] for side in ids[0])
        val_ids = tuple(side[plan.val] for side in ids[0])
        seen = np.concatenate(ids[0])
        if plan.grouped:
            split_notes.append(_grouped_note(cfg, plan.dropped, len(full.pairs), len(plan.val)))
        # In place: the features are held once, whatever the table's size.
        train, val = apply_split(full.pairs, plan, inplace=True)
    check_class_counts(str(val_path or train_path), train, val, minimum, cfg.val_fraction)
    overlap = {"test_pairs_seen_in_train": float(pairs_seen(ids[1], seen)),
               "test_pairs_both_sides_in_train": float(pairs_known(ids[1], seen)),
               "val_pairs_seen_in_train": float(pairs_seen(val_ids, np.concatenate(train_ids))),
               "val_pairs_duplicated_in_train": float(pairs_repeated(val_ids, train_ids))}
    pre = Preprocessor.fit(cfg.preprocess, train)
    dropped = {str(train_path): full.dropped, str(test_path): test.dropped,
               **({str(val_path): given.dropped} if given is not None else {})}
    return Dataset(
        name=cfg.name,
        train=pre.apply_inplace(train),
        val=pre.apply_inplace(val),
        test=pre.apply_inplace(test.pairs),
        preprocessor=pre,
        columns=spec,
        files=files,
        hashes=hashes,
        overlap=overlap,
        notes=[*_notes(spec, dropped, overlap, len(val), len(test.pairs)), *split_notes],
        feature_scale=scale,
    )


def _grouped_note(cfg: Any, dropped: int, n: int, n_val: int) -> str:
    why = "vectors repeat across rows, so " if cfg.get("split", "random") == "auto" else ""
    left_out = (f"; {dropped} of {n} pairs join a training vector to a validation vector and are left out"
                if dropped else "")
    return (f"data.split={cfg.get('split')}: {why}the validation split keeps every exact vector on one side "
            f"({n_val} validation pairs{left_out}; data.split=random for the plain split)")
