"""Files before their rows: existence checks, reader errors as one line, the CSV dialect, headers.

A CSV's separator and decimal mark are sniffed from its first lines unless the data config sets
them (``data.sep``, ``data.decimal``); a one-field header that holds another separator says so.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd

from siamese.errors import DataError
from siamese.paths import resolve


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path) -> None:
    """A missing, empty or directory path is an error naming it."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")


@contextlib.contextmanager
def table_errors(path: Path) -> Iterator[None]:
    """Reader exceptions as one-line :class:`DataError` naming the file."""
    try:
        yield
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as a table: {first}") from None


@dataclass(frozen=True)
class TableFormat:
    """How a CSV is written: field separator and decimal mark (``None``: sniffed from the file)."""

    sep: str | None = None
    decimal: str | None = None


SEPARATORS = (",", ";", "\t", "|")
# Names for data.sep, since ';' and a tab need quoting on a command line (Hydra and the shell).
SEPARATOR_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|", "\\t": "\t"}
DECIMAL_NAMES = {"comma": ",", "point": ".", "dot": "."}
_DECIMAL_COMMA = re.compile(r"\s*[-+]?\d*,\d+([eE][-+]?\d+)?\s*")


def _head_lines(path: Path, n: int = 20) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with table_errors(path), opener(path, "rb") as f:
        lines = [f.readline() for _ in range(n)]
    return [ln.decode("utf-8-sig" if i == 0 else "utf-8", errors="replace").rstrip("\r\n")
            for i, ln in enumerate(lines) if ln]


def csv_format(path: Path, given: TableFormat = TableFormat()) -> TableFormat:
    """The separator and decimal mark of a CSV: the given ones, else sniffed from its first lines.

    The separator is the candidate (``, ; tab |``) the header holds most often; the decimal mark
    is ``,`` when the separator is not and a data field reads like ``0,5``.
    """
    lines = _head_lines(path)
    header = lines[0] if lines else ""
    sep = SEPARATOR_NAMES.get(given.sep, given.sep) if given.sep else max(SEPARATORS, key=header.count)
    if not given.sep and header.count(sep) == 0:
        sep = ","
    decimal = DECIMAL_NAMES.get(given.decimal, given.decimal) if given.decimal else None
    if decimal is None:
        fields = [f for line in lines[1:] for f in line.split(sep)]
        decimal = "," if sep != "," and any(_DECIMAL_COMMA.fullmatch(f) for f in fields) else "."
    if sep == decimal:
        raise DataError(f"{path}: data.sep and data.decimal are both '{sep}'; set data.decimal")
    return TableFormat(sep, decimal)


def csv_names(path: Path, fmt: TableFormat) -> list[str]:
    """A CSV's column names; a one-field header holding another separator is an error saying so."""
    with table_errors(path):
        names = [str(c) for c in pd.read_csv(path, nrows=0, sep=fmt.sep, decimal=fmt.decimal).columns]
    if len(names) == 1:
        for other, shown, kind, setting in ((";", "';'", ";", "semicolon"), ("\t", "a tab", "tab", "tab")):
            if other in names[0] and other != fmt.sep:
                raise DataError(f"{path}: the header is one field holding {shown}, so the file looks {kind}-separated: "
                                f"set data.sep={setting} (or leave data.sep unset to sniff it)")
    return names


def table_names(path: str | os.PathLike, fmt: TableFormat = TableFormat()) -> list[str]:
    """A CSV's or Parquet file's column names, read from its header or schema only."""
    path = resolve(path)
    check_file(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        with table_errors(path):
            return [str(n) for n in pq.ParquetFile(path).schema_arrow.names]
    return csv_names(path, csv_format(path, fmt))
