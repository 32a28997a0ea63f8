"""Pair tables: reading and validating the user's format, splits, preprocessing, embedded data.

The format: feature columns (left vector then right vector, ``v0 … v{2d-1}`` by default) and a
label column, 1 = same, 0 = different. CSV (optionally gzip) and Parquet read the same way.

Modules (each imports only those above it; ``digits`` stands alone):

- :mod:`siamese.data.pairs`: :class:`PairSet`, :class:`ColumnSpec`, :func:`column_spec`,
  :func:`check_columns` (columns by name), ``CHUNK``.
- :mod:`siamese.data.identity`: :func:`vector_ids` (exact vector identity, for leakage counts and
  the grouped split).
- :mod:`siamese.data.groups`: the grouped validation split (no vector on both sides of the cut).
- :mod:`siamese.data.files`: file checks, the CSV dialect (:class:`TableFormat`), headers,
  :func:`file_sha256`.
- :mod:`siamese.data.tables`: reading and validating tables: :func:`read_chunks`,
  :func:`frame_to_pairs`, :func:`read_table` / :func:`read_pairs`, the CSV and Parquet readers.
- :mod:`siamese.data.split`: :func:`split_validation`, :class:`Preprocessor`, ``PREPROCESSING``.
- :mod:`siamese.data.digits`: :func:`build_digits`, the embedded digits pairs.
- :mod:`siamese.data.dataset`: :class:`Dataset`, :func:`data_files`, :func:`validation_file`,
  :func:`load_dataset`.

Everything public is importable from ``siamese.data`` itself.
"""

from siamese.data.dataset import Dataset, data_files, load_dataset, validation_file
from siamese.data.digits import build_digits
from siamese.data.files import TableFormat, file_sha256, table_names
from siamese.data.identity import vector_ids
from siamese.data.pairs import CHUNK, ColumnSpec, PairSet, check_columns, column_spec
from siamese.data.split import PREPROCESSING, Preprocessor, split_validation
from siamese.data.tables import frame_to_pairs, read_chunks, read_pairs, read_table

__all__ = [
    "CHUNK",
    "PREPROCESSING",
    "ColumnSpec",
    "Dataset",
    "PairSet",
    "Preprocessor",
    "TableFormat",
    "build_digits",
    "check_columns",
    "column_spec",
    "data_files",
    "file_sha256",
    "frame_to_pairs",
    "load_dataset",
    "read_chunks",
    "read_pairs",
    "read_table",
    "split_validation",
    "table_names",
    "validation_file",
    "vector_ids",
]
