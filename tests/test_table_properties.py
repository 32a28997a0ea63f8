"""Property-based tests of the table reader and the predict input check.

Over random shapes, column names and orders, dtypes, values and CSV dialects, reading a table is
either right (the same numbers as plain pandas, columns taken by name) or a one-line
:class:`DataError` naming the file; never any other exception.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from siamese.data import ColumnSpec, PairSet, TableFormat, read_table
from siamese.data.pairs import INDEX_COLUMN
from siamese.errors import DataError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIALECTS = {"csv": (",", "."), "csv.gz": (",", "."), "semicolon": (";", ","), "tab": ("\t", "."), "pipe": ("|", ","),
            "parquet": None}
JUNK = st.one_of(st.text(alphabet="ab1,;.- e", max_size=4), st.just(np.nan), st.just(np.inf), st.integers(-3, 3),
                 st.floats(allow_nan=False, width=32), st.booleans())
NAMES = st.text(alphabet="vV0123_ ;,\"'é|x", min_size=1, max_size=5)


@dataclass
class Layout:
    """A table as written: its frame, dialect, the columns a reader is told to ignore."""

    frame: pd.DataFrame
    dialect: str
    d: int
    ignore: list[str] = field(default_factory=list)

    def write(self, folder: Path) -> Path:
        if self.dialect == "parquet":
            path = folder / "t.parquet"
            self.frame.to_parquet(path)
            return path
        path = folder / ("t.csv.gz" if self.dialect == "csv.gz" else "t.csv")
        sep, decimal = DIALECTS[self.dialect]
        self.frame.to_csv(path, sep=sep, decimal=decimal, index=False)
        return path


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    """A valid pair table: v0 … v{2d-1} in any order, a label in any accepted form, maybe a saved
    index and ignored columns, in any dialect."""
    d, n = draw(st.integers(1, 4)), draw(st.integers(2, 25))
    values = draw(arrays(np.float32, (n, 2 * d), elements=st.floats(-2.0**100, 2.0**100, allow_nan=False, width=32)))
    y = draw(arrays(np.int64, n, elements=st.integers(0, 1)))
    y[0], y[1] = 0, 1
    form = draw(st.sampled_from(["int", "float", "bool", "text"]))
    label = {"int": y, "float": y.astype(float), "bool": y.astype(bool),
             "text": np.where(y == 1, draw(st.sampled_from(["true", "TRUE", " True"])), "false")}[form]
    frame = pd.DataFrame(values, columns=[f"v{i}" for i in range(2 * d)])
    frame["class"] = label
    ignore = draw(st.lists(st.sampled_from(["id", "note"]), unique=True, max_size=2))
    for name in ignore:
        frame[name] = draw(st.sampled_from([np.arange(n), np.full(n, "some text")]))
    index = draw(st.sampled_from([None, "Unnamed: 0", "index"]))
    if index:
        frame.insert(0, index, np.arange(n) * 7)
    frame = frame[draw(st.permutations(list(frame.columns)))]
    return Layout(frame, draw(st.sampled_from(sorted(DIALECTS))), d, ignore)


def plain_pandas(path: Path, layout: Layout) -> pd.DataFrame:
    """The reference: pandas told the true dialect."""
    if layout.dialect == "parquet":
        return pd.read_parquet(path)
    sep, decimal = DIALECTS[layout.dialect]
    return pd.read_csv(path, sep=sep, decimal=decimal)


def reference_labels(column: pd.Series) -> np.ndarray:
    def one(v: object) -> float:
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return float(v.strip().lower() == "true")
        return float(v)
    return np.array([one(v) for v in column], dtype=np.float32)


def check_right(table, raw: pd.DataFrame) -> None:
    """A read is right: v<i> by index as the sides, the same numbers as pandas, the label mapped."""
    d = table.pairs.dim
    assert table.spec.left == [f"v{i}" for i in range(d)] and table.spec.right == [f"v{i}" for i in range(d, 2 * d)]
    np.testing.assert_array_equal(table.pairs.left, raw[table.spec.left].to_numpy(np.float32))
    np.testing.assert_array_equal(table.pairs.right, raw[table.spec.right].to_numpy(np.float32))
    np.testing.assert_array_equal(table.pairs.y, reference_labels(raw["class"]))


def check_refused(exc: DataError, path: Path) -> str:
    """A refusal is one line naming the file; returns the message."""
    text = str(exc)
    assert "\n" not in text and text.startswith(f"{path}: "), text
    return text


@SETTINGS
@given(layouts())
def test_valid_tables_read_right_in_any_order_and_dialect(layout):
    with tempfile.TemporaryDirectory() as tmp:
        path = layout.write(Path(tmp))
        table = read_table(path, ignore=layout.ignore)
        assert table.pairs.dim == layout.d
        check_right(table, plain_pandas(path, layout))
        assert set(table.dropped) == {c for c in layout.frame.columns if c in layout.ignore or INDEX_COLUMN.fullmatch(c)}


@st.composite
def damaged(draw: st.DrawFn) -> tuple[Layout, TableFormat]:
    """A valid table with one thing changed: a column dropped, renamed or added, a cell replaced,
    a header repeated, the rows removed, or the reader told another separator."""
    layout = draw(layouts())
    frame = layout.frame.copy()
    columns = list(frame.columns)
    kind = draw(st.sampled_from(["drop", "rename", "add", "cell", "repeat", "empty", "separator"]))
    fmt = TableFormat()
    if kind == "drop":
        frame = frame.drop(columns=[draw(st.sampled_from(columns))])
    elif kind == "rename":
        old = draw(st.sampled_from(columns))
        frame = frame.rename(columns={old: draw(NAMES.filter(lambda s: s not in columns))})
    elif kind == "add":
        name = draw(NAMES.filter(lambda s: s not in columns))
        frame.insert(draw(st.integers(0, len(columns))), name, draw(JUNK))
    elif kind == "cell":
        col, row = draw(st.sampled_from(columns)), draw(st.integers(0, len(frame) - 1))
        frame[col] = frame[col].astype(object)
        frame.loc[row, col] = draw(JUNK)
        if layout.dialect == "parquet":  # one type per Parquet column: the damaged one becomes text
            frame[col] = frame[col].astype(str)
    elif kind == "repeat":
        frame.columns = [*columns[:-1], draw(st.sampled_from(columns[:-1]))] if len(columns) > 1 else columns
    elif kind == "empty":
        frame = frame.head(0)
    else:
        fmt = TableFormat(sep=draw(st.sampled_from(["comma", "semicolon", "tab"])))
    return Layout(frame, layout.dialect, layout.d, layout.ignore), fmt


@SETTINGS
@given(damaged())
def test_damaged_tables_are_read_right_or_refused_in_one_line(case):
    layout, fmt = case
    with tempfile.TemporaryDirectory() as tmp:
        # Parquet refuses repeated column names: that damage exists in CSV only.
        assume(layout.dialect != "parquet" or len(set(layout.frame.columns)) == len(layout.frame.columns))
        path = layout.write(Path(tmp))
        try:
            table = read_table(path, ignore=layout.ignore, fmt=fmt)
        except DataError as exc:
            check_refused(exc, path)
            return
        check_right(table, plain_pandas(path, layout))


# -- the predict input check ----------------------------------------------------------------------
@st.composite
def inputs(draw: st.DrawFn) -> tuple[pd.DataFrame, bool]:
    """A frame for a model taking v0 … v5 (label 'class', ignore ['id']): any subset or superset
    of its columns in any order; whether the columns are acceptable, decided here by rule."""
    spec_names = [f"v{i}" for i in range(6)]
    kept = [c for c in spec_names if draw(st.booleans()) or draw(st.booleans())]  # mostly kept
    others = draw(st.lists(st.sampled_from(["class", "id", "Unnamed: 0", "index", "v6", "extra", "V1"]), unique=True))
    assume(kept or others)  # a file with no columns at all is "file is empty", the matrix's case
    names = draw(st.permutations(kept + others))
    n = draw(st.integers(1, 8))
    frame = pd.DataFrame({c: draw(arrays(np.float32, n, elements=st.floats(-2.0**20, 2.0**20, width=32))) for c in names})
    if "class" in frame:
        frame["class"] = np.arange(n) % 2
    acceptable = set(kept) == set(spec_names) and all(c in ("class", "id", "Unnamed: 0", "index") for c in others)
    return frame, acceptable


@pytest.fixture(scope="module")
def bundle():
    from siamese.bundle import ModelBundle
    from siamese.cli import compose_config
    from siamese.data import Preprocessor
    from siamese.model import build_model

    import keras

    cfg = compose_config("train", [])
    keras.utils.set_random_seed(0)  # the same initial weights in every run of the suite
    return ModelBundle(build_model(3, cfg.model, "logit"), Preprocessor("standardize", np.zeros(3, np.float32),
                       np.full(3, 2.0, np.float32)), "logit", 0.0, 0.0,
                       {"label": "class", "left": ["v0", "v1", "v2"], "right": ["v3", "v4", "v5"], "ignore": ["id"]})


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=inputs())
def test_predict_input_is_scored_by_name_or_refused(bundle, case):
    from siamese.predict import score_file

    frame, acceptable = case
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        frame.to_csv(source, index=False)
        try:
            result = score_file(bundle, source, out, chunk_rows=3)
        except DataError as exc:
            problem = check_refused(exc, source).split("; it takes")[0]
            assert not acceptable and not out.exists()
            missing = [c for c in bundle.spec.features if c not in frame.columns]
            extra = [c for c in frame.columns if c not in (*bundle.spec.features, "class", "id", "Unnamed: 0", "index")]
            assert any(f"'{c}'" in problem for c in missing + extra), exc  # names a missing or an extra column
            return
        assert acceptable and result["rows"] == len(frame)
        raw = pd.read_csv(source)
        expected, _ = bundle.predict(PairSet(raw[bundle.spec.left].to_numpy(np.float32),
                                             raw[bundle.spec.right].to_numpy(np.float32)))
        # float32: a row's score depends by ~1e-6 (relative) on how many rows share its batch (the file is
        # scored 3 rows at a time, `expected` in one batch), so equal means equal to 1e-5.
        np.testing.assert_allclose(pd.read_csv(out)["score"], expected, rtol=1e-5, atol=1e-5)


def test_column_spec_orders_by_index_not_text():
    from siamese.data import column_spec

    names = sorted([f"v{i}" for i in range(12)]) + ["class"]
    spec = column_spec(names, "class", None, None, Path("t.csv"))
    assert spec == ColumnSpec("class", [f"v{i}" for i in range(6)], [f"v{i}" for i in range(6, 12)], [])
