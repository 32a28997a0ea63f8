"""Synthetic pair tables in the user's format, for speed and growth benchmarks (accuracy uses real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def pairs(n: int, d: int, seed: int = 0, noise: float = 1.0, scale: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs of ``d``-wide vectors: a same pair is two noisy views of one latent item, a
    different pair two items; about half are same. Values are ~``scale`` as in the question's data.

    Returns:
        Features ``(n, 2d)`` float32 (left then right) and labels ``(n,)`` float32.
    """
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.53).astype(np.float32)
    a = rng.standard_normal((n, d), dtype=np.float32)
    b = np.where(y[:, None] == 1, a, rng.standard_normal((n, d), dtype=np.float32))
    x = np.empty((n, 2 * d), np.float32)
    x[:, :d] = (a + noise * rng.standard_normal((n, d), dtype=np.float32)) * scale
    x[:, d:] = (b + noise * rng.standard_normal((n, d), dtype=np.float32)) * scale
    return x, y


def frame(n: int, d: int, seed: int = 0, noise: float = 1.0) -> pd.DataFrame:
    """:func:`pairs` as a frame with columns ``v0 … v{2d-1}`` and ``class``."""
    x, y = pairs(n, d, seed, noise)
    out = pd.DataFrame(x, columns=[f"v{i}" for i in range(2 * d)])
    out["class"] = y
    return out


def write(path: Path, n: int, d: int, seed: int = 0, noise: float = 1.0, rows_per_chunk: int = 100_000) -> Path:
    """Write a table of ``n`` pairs as CSV or Parquet (by suffix), chunk by chunk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        for start in range(0, n, rows_per_chunk):
            table = pa.Table.from_pandas(frame(min(rows_per_chunk, n - start), d, seed + start, noise), preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
        writer.close()
    else:
        for start in range(0, n, rows_per_chunk):
            frame(min(rows_per_chunk, n - start), d, seed + start, noise).to_csv(
                path, mode="a" if start else "w", header=not start, index=False, float_format="%.6g")
    return path
