"""Reading and validating pair tables: CSV (optionally gzip) and Parquet read the same way.

:func:`read_chunks` (a table in frames), :func:`frame_to_pairs` (one frame validated into a
:class:`~siamese.data.pairs.PairSet`), :func:`read_table` / :func:`read_pairs` (a whole labelled
table into one float32 array, columns by name), the label and feature checks behind them, and
row counting. File checks and the CSV dialect are in :mod:`siamese.data.files`.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from siamese.data.files import TableFormat, check_file, csv_format, csv_names, table_errors, table_names
from siamese.data.pairs import CHUNK, ColumnSpec, PairSet, check_columns, column_spec
from siamese.errors import DataError
from siamese.paths import resolve


def read_chunks(path: str | os.PathLike, rows: int, fmt: TableFormat = TableFormat()) -> Iterator[pd.DataFrame]:
    """A CSV or Parquet table in frames of at most ``rows`` rows, so only one is in memory at a time.

    Raises:
        DataError: the file is missing, empty, unreadable or has no data rows.
    """
    path = resolve(path)
    check_file(path)
    any_rows = False
    with table_errors(path):
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            # Stream pages instead of pre-buffering whole row groups (a row group can be the whole
            # file); hand freed batches back to the OS at the end (mimalloc keeps them otherwise).
            table = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 22)
            chunks: Iterator[pd.DataFrame] = (b.to_pandas() for b in table.iter_batches(batch_size=rows))
        else:
            fmt = csv_format(path, fmt)
            csv_names(path, fmt)
            chunks = pd.read_csv(path, chunksize=rows, sep=fmt.sep, decimal=fmt.decimal)
        for chunk in chunks:
            any_rows = any_rows or not chunk.empty
            yield chunk
        if path.suffix == ".parquet":
            pa.default_memory_pool().release_unused()
    if not any_rows:
        raise DataError(f"{path}: file has no data rows")


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
    numbers = series
    if series.dtype == object or pd.api.types.is_string_dtype(series):  # pandas 3 reads text as "str"
        lowered = series.astype(str).str.strip().str.lower()
        numbers = lowered.map({"true": 1.0, "false": 0.0}).where(
            lowered.isin(["true", "false"]), pd.to_numeric(series, errors="coerce")
        )
    values = pd.to_numeric(numbers, errors="coerce").to_numpy(dtype=np.float64)
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
    """Validate a loaded frame and turn it into a :class:`PairSet`, taking columns by name.

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
        raise DataError(f"{path}: label column '{spec.label}' not found (set data.label)")
    return PairSet(left, right, y)


def _count_rows(path: Path) -> int:
    """Data rows in a table, without parsing it: Parquet metadata, or newlines in a CSV."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        with table_errors(path):
            return int(pq.ParquetFile(path).metadata.num_rows)
    opener = gzip.open if path.suffix == ".gz" else open
    lines, last = 0, b"\n"
    with table_errors(path), opener(path, "rb") as f:
        while block := f.read(1 << 22):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n") - 1  # a last line without newline; minus the header


@dataclass
class Table:
    """A labelled pair table read whole: the pairs, which columns they came from, what was dropped."""

    pairs: PairSet
    spec: ColumnSpec
    dropped: list[str]


def read_table(path: str | os.PathLike, label: str = "class", left: Any = None, right: Any = None,
               chunk_rows: int | None = None, *, ignore: Any = (), fmt: TableFormat = TableFormat(),
               expect: ColumnSpec | None = None) -> Table:
    """Read and validate a labelled pair table into one float32 array, chunk by chunk, columns by name.

    The rows are counted first and the features written straight into an (n, 2d) array, so
    reading never holds more than that array plus one chunk (``chunk_rows``; by default as many
    rows as make about 16 MiB of float64 cells, since pandas parses to float64 first).

    Args:
        label, left, right, ignore: the data config's columns (see :func:`column_spec`).
        fmt: the CSV's separator and decimal mark (``None`` fields: sniffed).
        expect: read by these columns instead (a test file by its training file's names): a
            missing or extra column is an error naming it.

    Raises:
        DataError: on any problem with the file, naming the file and the column or line.
    """
    path = resolve(path)
    names = table_names(path, fmt)
    if expect is not None:
        spec = ColumnSpec(label, list(expect.left), list(expect.right), sorted({*expect.ignore, *map(str, ignore or ())}))
        try:
            check_columns(names, spec, path, labelled=True)
        except DataError:
            _other_width(names, spec, path)
            raise
    else:
        if label not in names:
            raise DataError(f"{path}: label column '{label}' not found (set data.label); columns: "
                            f"{', '.join(names[:8])}{', …' if len(names) > 8 else ''}")
        spec = column_spec(names, label, left, right, path, [str(c) for c in ignore or ()])
    if path.suffix == ".parquet":
        pairs = _read_parquet(path, spec)
    else:
        pairs = _read_csv(path, spec, chunk_rows, csv_format(path, fmt))
    if len(np.unique(pairs.y)) < 2:
        raise DataError(f"{path}: only one class ({int(pairs.y[0])}) present; need both 0 and 1")
    return Table(pairs, spec, [n for n in names if spec.droppable(n)])


def _other_width(names: list[str], spec: ColumnSpec, path: Path) -> None:
    """A file laid out like the training file but with vectors of another width: say that."""
    try:
        own = column_spec(names, spec.label, None, None, path, spec.ignore)
    except DataError:
        return
    if len(own.left) != len(spec.left):
        raise DataError(f"{path}: vectors are {len(own.left)} wide but the training file's are {len(spec.left)} "
                        f"({own.describe()}); widths must match")


def read_pairs(path: str | os.PathLike, label: str = "class", left: Any = None, right: Any = None,
               chunk_rows: int | None = None, **options: Any) -> tuple[PairSet, ColumnSpec]:
    """:func:`read_table`'s pairs and columns (``options``: ``ignore``, ``fmt``, ``expect``)."""
    table = read_table(path, label, left, right, chunk_rows, **options)
    return table.pairs, table.spec


def _read_csv(path: Path, spec: ColumnSpec, chunk_rows: int | None, fmt: TableFormat) -> PairSet:
    if chunk_rows is None:
        chunk_rows = max(256, (16 << 20) // (8 * max(len(spec.features) + 1, 1)))
    n = max(_count_rows(path), 0)
    d = len(spec.left)
    buffer, y, filled = np.empty((n, 2 * d), np.float32), np.empty(n, np.float32), 0
    with table_errors(path):
        # Every column is parsed (no usecols): pandas checks each row's field count only then,
        # and a row with a field too many (a stray separator) shifts the values after it.
        chunks = pd.read_csv(path, chunksize=chunk_rows, sep=fmt.sep, decimal=fmt.decimal)
        for chunk in chunks:
            part = frame_to_pairs(chunk, spec, path, first_line=filled + 2)
            end = filled + len(part)
            if end > n:  # a quoted newline would make the count short; never in a numeric table
                raise DataError(f"{path}: more rows than lines (a quoted field spans lines?)")
            buffer[filled:end, :d], buffer[filled:end, d:], y[filled:end] = part.left, part.right, part.y
            filled = end
    if filled == 0:
        raise DataError(f"{path}: file has no data rows")
    return PairSet.of(buffer[:filled], y[:filled])  # blank lines are counted but not read


def _read_parquet(path: Path, spec: ColumnSpec, block: int = 64) -> PairSet:
    """Parquet straight into the (n, 2d) array, ``block`` columns of one row group at a time.

    Arrow decodes a whole row group per read (often the whole file); reading a few columns at a
    time bounds that to rows × ``block`` cells. Measured on 100,000 × 768 float32 columns (293 MB):
    through pandas frames the read peaked 2.4 GB above the process's baseline, in blocks 0.47 GB.
    """
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    with table_errors(path):
        table = pq.ParquetFile(path, pre_buffer=False)
        schema, n = table.schema_arrow, table.metadata.num_rows
    if n == 0:
        raise DataError(f"{path}: file has no data rows")
    for name in spec.features:
        kind = schema.field(name).type
        if not (pat.is_integer(kind) or pat.is_floating(kind)):
            raise DataError(f"{path}: column '{name}' is {kind}, not numeric")
    buffer, start = np.empty((n, len(spec.features)), np.float32), 0
    with table_errors(path):
        for group in range(table.num_row_groups):
            rows = table.metadata.row_group(group).num_rows
            for b in range(0, len(spec.features), block):
                part = table.read_row_group(group, columns=spec.features[b : b + block])
                for j, column in enumerate(part.columns):
                    buffer[start : start + rows, b + j] = column.to_numpy(zero_copy_only=False)
            start += rows
        labels = table.read(columns=[spec.label]).column(spec.label).to_pandas()
    for s in range(0, n, CHUNK):
        _check_finite(buffer[s : s + CHUNK], spec.features, path, s + 2)
    return PairSet.of(buffer, _labels(labels, path, 2))
