"""Pair tables: reading and validating the user's format, splits, preprocessing, embedded data.

The format: feature columns (left vector then right vector, ``v0 … v{2d-1}`` by default) and a
label column, 1 = same, 0 = different. CSV (optionally gzip) and Parquet read the same way.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from siamese.errors import DataError
from siamese.paths import resolve

PREPROCESSING = ("none", "standardize", "l2")
CHUNK = 65_536  # rows per step when working in place


@dataclass
class PairSet:
    """Aligned left vectors, right vectors and 0/1 labels (labels may be absent at predict time)."""

    left: np.ndarray
    right: np.ndarray
    y: np.ndarray | None = None
    # The (n, 2d) array whose halves ``left`` and ``right`` are, when they share one: lets the
    # split and preprocessing work in place instead of copying the features.
    buffer: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def of(cls, buffer: np.ndarray, y: np.ndarray | None) -> "PairSet":
        """Pairs as views of one (n, 2d) array: left half, right half."""
        d = buffer.shape[1] // 2
        return cls(buffer[:, :d], buffer[:, d:], y, buffer)

    def __len__(self) -> int:
        return len(self.left)

    @property
    def dim(self) -> int:
        """Width of one side."""
        return int(self.left.shape[1])

    def take(self, idx: np.ndarray) -> "PairSet":
        """The rows at ``idx``."""
        return PairSet(self.left[idx], self.right[idx], None if self.y is None else self.y[idx])

    def swapped(self) -> "PairSet":
        """The same pairs with left and right exchanged."""
        return PairSet(self.right, self.left, self.y)

    def concat(self, other: "PairSet") -> "PairSet":
        """This set followed by ``other``."""
        y = None if self.y is None else np.concatenate([self.y, other.y])
        return PairSet(
            np.concatenate([self.left, other.left]), np.concatenate([self.right, other.right]), y
        )


@dataclass
class ColumnSpec:
    """Which columns hold the label, the left vector and the right vector."""

    label: str = "class"
    left: list[str] = field(default_factory=list)
    right: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        """Left then right feature column names."""
        return self.left + self.right

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "left": self.left, "right": self.right}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")


@contextlib.contextmanager
def _table_errors(path: Path) -> Iterator[None]:
    """Reader exceptions as one-line :class:`DataError` naming the file."""
    try:
        yield
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as a table: {first}") from None


def read_chunks(path: str | os.PathLike, rows: int) -> Iterator[pd.DataFrame]:
    """A CSV or Parquet table in frames of at most ``rows`` rows, so only one is in memory at a time.

    Raises:
        DataError: the file is missing, empty, unreadable or has no data rows.
    """
    path = resolve(path)
    _check_file(path)
    any_rows = False
    with _table_errors(path):
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            # Stream pages instead of pre-buffering whole row groups (a row group can be the whole
            # file); hand freed batches back to the OS at the end (mimalloc keeps them otherwise).
            table = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 22)
            chunks: Iterator[pd.DataFrame] = (b.to_pandas() for b in table.iter_batches(batch_size=rows))
        else:
            chunks = pd.read_csv(path, chunksize=rows)
        for chunk in chunks:
            any_rows = any_rows or not chunk.empty
            yield chunk
        if path.suffix == ".parquet":
            pa.default_memory_pool().release_unused()
    if not any_rows:
        raise DataError(f"{path}: file has no data rows")


def _pick(side: Any, names: list[str], what: str, path: Path) -> list[str] | None:
    """Columns for one side: None (half mode), a prefix string, or an explicit list."""
    if side is None:
        return None
    if isinstance(side, str):
        picked = [c for c in names if c.startswith(side)]
        if not picked:
            raise DataError(f"{path}: no column starts with {what} prefix '{side}'")
        return picked
    picked = [str(c) for c in side]
    missing = [c for c in picked if c not in names]
    if missing:
        raise DataError(f"{path}: {what} column '{missing[0]}' not found")
    return picked


def column_spec(names: Sequence[str], label: str | None, left: Any, right: Any, path: Path) -> ColumnSpec:
    """Work out which columns are the label, left and right vectors.

    Args:
        names: the file's column names in order.
        label: the label column; ``None`` when the file may have no labels (predict time).
        left: ``None`` for half/half of the feature columns, a prefix, or a list of names.
        right: as ``left``; required when ``left`` is given.
        path: the file, for messages.
    """
    names = [str(n) for n in names]
    features = [n for n in names if n != label]
    if (left is None) != (right is None):
        raise DataError(f"{path}: give both data.left and data.right, or neither")
    if left is None:
        if len(features) == 0:
            raise DataError(f"{path}: no feature columns besides '{label}'")
        if len(features) % 2:
            raise DataError(
                f"{path}: {len(features)} feature columns is odd; half/half split needs an even "
                "number (or set data.left / data.right)"
            )
        half = len(features) // 2
        return ColumnSpec(label or "", features[:half], features[half:])
    lcols, rcols = _pick(left, names, "left", path), _pick(right, names, "right", path)
    if len(lcols) != len(rcols):
        raise DataError(f"{path}: left has {len(lcols)} columns but right has {len(rcols)}")
    return ColumnSpec(label or "", lcols, rcols)


def _show(value: Any) -> str:
    """A cell value as a user would write it: strings quoted, numbers plain."""
    return repr(value) if isinstance(value, str) else str(getattr(value, "item", lambda: value)())


def _features(frame: pd.DataFrame, columns: list[str], path: str | Path, first_line: int) -> np.ndarray:
    for col in columns:
        series = frame[col]
        if series.dtype == bool or not pd.api.types.is_numeric_dtype(series):
            as_num = pd.to_numeric(series, errors="coerce")
            bad = np.flatnonzero(as_num.isna().to_numpy() & series.notna().to_numpy())
            if series.dtype == bool or len(bad):
                row = int(bad[0]) if len(bad) else 0
                raise DataError(
                    f"{path}: column '{col}' line {row + first_line} is not numeric: {_show(series.iloc[row])}"
                )
    values = frame[columns].to_numpy(dtype=np.float32)
    _check_finite(values, columns, path, first_line)
    return values


def _check_finite(values: np.ndarray, columns: list[str], path: str | Path, first_line: int) -> None:
    """NaN or inf in ``values`` is an error naming the first such cell's column and line."""
    finite = np.isfinite(values)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise DataError(
            f"{path}: column '{columns[col]}' line {row + first_line} is {values[row, col]} "
            "(NaN or inf values are not allowed)"
        )


def _labels(series: pd.Series, path: str | Path, first_line: int) -> np.ndarray:
    if series.dtype == bool:
        return series.to_numpy(dtype=np.float32)
    if series.dtype == object:
        lowered = series.astype(str).str.strip().str.lower()
        series = lowered.map({"true": 1.0, "false": 0.0}).where(
            lowered.isin(["true", "false"]), pd.to_numeric(series, errors="coerce")
        )
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isin(values, [0.0, 1.0]))
    if len(bad):
        row = int(bad[0])
        raise DataError(
            f"{path}: label column '{series.name}' line {row + first_line} is "
            f"{_show(series.iloc[row])}; labels must be 0 or 1 (1 = same)"
        )
    return values.astype(np.float32)


def frame_to_pairs(
    frame: pd.DataFrame, spec: ColumnSpec, path: str | Path, first_line: int = 2, labelled: bool = True
) -> PairSet:
    """Validate a loaded frame and turn it into a :class:`PairSet`.

    Args:
        frame: the rows.
        spec: which columns are which.
        path: the file (or another name for the source), for messages.
        first_line: the file line of the frame's first row (2 after a CSV header).
        labelled: whether the label column must be present.
    """
    missing = [c for c in spec.features if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: column '{missing[0]}' is missing")
    left = _features(frame, spec.left, path, first_line)
    right = _features(frame, spec.right, path, first_line)
    y = None
    if spec.label in frame.columns:
        y = _labels(frame[spec.label], path, first_line)
    elif labelled:
        raise DataError(f"{path}: label column '{spec.label}' not found")
    return PairSet(left, right, y)


def _count_rows(path: Path) -> int:
    """Data rows in a table, without parsing it: Parquet metadata, or newlines in a CSV."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        with _table_errors(path):
            return int(pq.ParquetFile(path).metadata.num_rows)
    opener = gzip.open if path.suffix == ".gz" else open
    lines, last = 0, b"\n"
    with _table_errors(path), opener(path, "rb") as f:
        while block := f.read(1 << 22):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n") - 1  # a last line without newline; minus the header


def read_pairs(path: str | os.PathLike, label: str = "class", left: Any = None, right: Any = None,
               chunk_rows: int | None = None) -> tuple[PairSet, ColumnSpec]:
    """Read and validate a labelled pair table into one float32 array, chunk by chunk.

    The rows are counted first and the features written straight into an (n, 2d) array, so
    reading never holds more than that array plus one chunk (``chunk_rows``; by default as many
    rows as make about 16 MiB of float64 cells, since pandas parses to float64 first).

    Raises:
        DataError: on any problem with the file, naming the file and the column or line.
    """
    path = resolve(path)
    _check_file(path)
    if path.suffix == ".parquet":
        pairs, spec = _read_parquet(path, label, left, right)
    else:
        pairs, spec = _read_csv(path, label, left, right, chunk_rows)
    if len(np.unique(pairs.y)) < 2:
        raise DataError(f"{path}: only one class ({int(pairs.y[0])}) present; need both 0 and 1")
    return pairs, spec


def _read_csv(path: Path, label: str, left: Any, right: Any, chunk_rows: int | None) -> tuple[PairSet, ColumnSpec]:
    if chunk_rows is None:
        with _table_errors(path):
            width = len(pd.read_csv(path, nrows=0).columns)
        chunk_rows = max(256, (16 << 20) // (8 * max(width, 1)))
    n = max(_count_rows(path), 0)
    spec, buffer, y, filled = None, np.empty((0, 0), np.float32), np.empty(0, np.float32), 0
    for chunk in read_chunks(path, chunk_rows):
        if spec is None:
            if label not in chunk.columns:
                raise DataError(f"{path}: label column '{label}' not found (set data.label)")
            spec = column_spec(list(chunk.columns), label, left, right, path)
            d = len(spec.left)
            buffer, y = np.empty((n, 2 * d), np.float32), np.empty(n, np.float32)
        part = frame_to_pairs(chunk, spec, path, first_line=filled + 2)
        end = filled + len(part)
        if end > n:  # a quoted newline would make the count short; never in a numeric table
            raise DataError(f"{path}: more rows than lines (a quoted field spans lines?)")
        buffer[filled:end, :d], buffer[filled:end, d:], y[filled:end] = part.left, part.right, part.y
        filled = end
    return PairSet.of(buffer[:filled], y[:filled]), spec  # blank lines are counted but not read


def _read_parquet(path: Path, label: str, left: Any, right: Any, block: int = 64) -> tuple[PairSet, ColumnSpec]:
    """Parquet straight into the (n, 2d) array, ``block`` columns of one row group at a time.

    Arrow decodes a whole row group per read (often the whole file); reading a few columns at a
    time bounds that to rows × ``block`` cells. Measured on 100,000 × 768 float32 columns (293 MB):
    through pandas frames the read peaked 2.4 GB above the process's baseline, in blocks 0.47 GB.
    """
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    with _table_errors(path):
        table = pq.ParquetFile(path, pre_buffer=False)
        schema, n = table.schema_arrow, table.metadata.num_rows
    if n == 0:
        raise DataError(f"{path}: file has no data rows")
    if label not in schema.names:
        raise DataError(f"{path}: label column '{label}' not found (set data.label)")
    spec = column_spec(schema.names, label, left, right, path)
    for name in spec.features:
        kind = schema.field(name).type
        if not (pat.is_integer(kind) or pat.is_floating(kind)):
            raise DataError(f"{path}: column '{name}' is {kind}, not numeric")
    buffer, start = np.empty((n, len(spec.features)), np.float32), 0
    with _table_errors(path):
        for group in range(table.num_row_groups):
            rows = table.metadata.row_group(group).num_rows
            for b in range(0, len(spec.features), block):
                part = table.read_row_group(group, columns=spec.features[b : b + block])
                for j, column in enumerate(part.columns):
                    buffer[start : start + rows, b + j] = column.to_numpy(zero_copy_only=False)
            start += rows
        labels = table.read(columns=[label]).column(label).to_pandas()
    for s in range(0, n, CHUNK):
        _check_finite(buffer[s : s + CHUNK], spec.features, path, s + 2)
    return PairSet.of(buffer, _labels(labels, path, 2)), spec


def _partition(arrays: list[np.ndarray], first: np.ndarray, rest: np.ndarray, chunk: int = CHUNK) -> None:
    """Reorder rows in place: rows ``first`` (sorted) to the front, then rows ``rest``.

    Only ``rest`` is copied aside; the front is compacted forward chunk by chunk, which is safe
    because ``first[k] >= k`` for sorted indices.
    """
    for a in arrays:
        aside = a[rest]
        for start in range(0, len(first), chunk):
            idx = first[start : start + chunk]
            a[start : start + len(idx)] = a[idx]
        a[len(first) :] = aside


def split_validation(pairs: PairSet, fraction: float, shuffle: bool, seed: int,
                     inplace: bool = False) -> tuple[PairSet, PairSet]:
    """Hold out a validation set from the training pairs.

    With ``shuffle`` the split is stratified and seeded; without it the last ``fraction`` of
    rows is held out, as the question's script did. Each part keeps the file's row order.

    Args:
        inplace: reorder ``pairs`` (which must share one buffer) so both parts are views of it,
            instead of copying them; ``pairs`` itself is then train rows followed by val rows.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"data.val_fraction must be in (0, 1), got {fraction}")
    n = len(pairs)
    n_val = int(round(n * fraction))
    if n_val < 2 or n - n_val < 2:
        raise DataError(f"{n} training pairs are too few to hold out a {fraction} validation split")
    if not shuffle:
        train_idx, val_idx = np.arange(n - n_val), np.arange(n - n_val, n)
    else:
        from sklearn.model_selection import train_test_split

        train_idx, val_idx = (np.sort(i) for i in train_test_split(
            np.arange(n), test_size=n_val, random_state=seed, stratify=pairs.y))
    if not (inplace and pairs.buffer is not None):
        return pairs.take(train_idx), pairs.take(val_idx)
    if shuffle:
        _partition([pairs.buffer, pairs.y], train_idx, val_idx)
    n_train = n - n_val
    return (PairSet.of(pairs.buffer[:n_train], pairs.y[:n_train]),
            PairSet.of(pairs.buffer[n_train:], pairs.y[n_train:]))


@dataclass
class Preprocessor:
    """A transform fit on the training split only and applied to both sides alike."""

    kind: str = "none"
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    @classmethod
    def fit(cls, kind: str, pairs: PairSet) -> "Preprocessor":
        """Fit on training pairs; both sides share one transform so the model stays symmetric."""
        if kind not in PREPROCESSING:
            raise DataError(f"data.preprocess must be one of {list(PREPROCESSING)}, got '{kind}'")
        if kind != "standardize":
            return cls(kind)
        # Two passes in chunks (mean, then squared deviations) in float64: no copy of the data.
        sides = (pairs.left, pairs.right)
        count = 2 * len(pairs)
        mean = sum(a[s : s + CHUNK].sum(axis=0, dtype=np.float64) for a in sides for s in range(0, len(a), CHUNK)) / count
        var = sum(np.square(a[s : s + CHUNK] - mean).sum(axis=0) for a in sides for s in range(0, len(a), CHUNK)) / count
        std = np.sqrt(var)
        return cls(kind, mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply to one side's vectors."""
        if self.kind == "standardize":
            return ((x - self.mean) / self.scale).astype(np.float32)
        if self.kind == "l2":
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            return (x / np.maximum(norm, 1e-12)).astype(np.float32)
        return x

    def apply(self, pairs: PairSet) -> PairSet:
        """Apply to both sides of a pair set (a transformed copy)."""
        return PairSet(self.transform(pairs.left), self.transform(pairs.right), pairs.y)

    def apply_inplace(self, pairs: PairSet) -> PairSet:
        """Apply to both sides in place, chunk by chunk (same values as :meth:`apply`)."""
        if self.kind != "none":
            for a in (pairs.left, pairs.right):
                for s in range(0, len(a), CHUNK):
                    a[s : s + CHUNK] = self.transform(a[s : s + CHUNK])
        return pairs

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "mean": None if self.mean is None else self.mean.tolist(),
            "scale": None if self.scale is None else self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessor":
        arr = lambda v: None if v is None else np.asarray(v, dtype=np.float32)  # noqa: E731
        return cls(d["kind"], arr(d.get("mean")), arr(d.get("scale")))


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


def build_digits(cache_dir: str | os.PathLike, seed: int = 0, n_train: int = 4000, n_test: int = 1000,
                 test_images: float = 0.3) -> tuple[Path, Path]:
    """Write same/different-digit pairs from scikit-learn's bundled digits, in the user's format.

    Images are split into disjoint train and test pools first, so no image appears in both a
    training and a test pair. Deterministic in ``seed``; reused from ``cache_dir`` when present.

    Returns:
        Paths of the train and test CSV files.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    folder = resolve(cache_dir) / f"digits-s{seed}-{n_train}-{n_test}-{test_images}"
    train_path, test_path = folder / "train.csv", folder / "test.csv"
    if train_path.exists() and test_path.exists():
        return train_path, test_path
    folder.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    idx_train, idx_test = train_test_split(
        np.arange(len(images)), test_size=test_images, random_state=seed, stratify=digits.target
    )
    rng = np.random.default_rng(seed)
    _write_atomic_csv(_digit_pairs(images[idx_train], digits.target[idx_train], n_train, rng), train_path)
    _write_atomic_csv(_digit_pairs(images[idx_test], digits.target[idx_test], n_test, rng), test_path)
    (folder / "images.json").write_text(json.dumps({"train": sorted(map(int, idx_train)), "test": sorted(map(int, idx_test))}))
    return train_path, test_path


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
