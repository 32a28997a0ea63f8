"""The bad-input matrix: every kind of bad table, config, space, model URI, predict input and
tracking store ends in one line naming the problem, exit 2 (1 for training that diverged), no
traceback, and nothing half-written: no FINISHED run, no registry version, no output file.

Most cases call the task functions in-process: a :class:`UserError` is exactly what the CLI
prints as ``error: <message>`` with exit 2 (``siamese.cli``); the ``test_cli_*`` cases run real
processes to prove that mapping. The other half of the issue, inputs that must be read *right*,
is in ``test_read_right_*``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import compose_cfg, random_pairs, run_cli, tracking_overrides
from siamese.bundle import ModelBundle
from siamese.cli import compose_config
from siamese.data import Preprocessor
from siamese.errors import ConfigError, DataError, TrackingError, UserError
from siamese.export import export
from siamese.model import build_model
from siamese.overrides import check_added_keys
from siamese.predict import predict
from siamese.registry import log_pyfunc
from siamese.train import train
from siamese.tune import tune

D = 4  # a side: files have v0 … v7 and class
FEATURES = [f"v{i}" for i in range(2 * D)]


def table(n: int = 200, d: int = D, seed: int = 0, scale: float = 1.0, positives: int | None = None) -> pd.DataFrame:
    """A pair table in the user's format; ``positives`` fixes how many rows are 'same'."""
    left, right, y = random_pairs(n, d, seed)
    if positives is not None:
        y = (np.arange(n) < positives).astype(np.float32)
    frame = pd.DataFrame(np.hstack([left, right]) * scale, columns=[f"v{i}" for i in range(2 * d)])
    frame["class"] = y.astype(int)
    return frame


def write(frame: pd.DataFrame, path: Path, **kwargs) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, **kwargs)
    else:
        frame.to_csv(path, index=kwargs.pop("index", False), **kwargs)
    return path


def one_line(exc: BaseException) -> str:
    """The message the CLI would print: one line, no traceback."""
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def store_state(store: Path) -> dict:
    """Runs by status and registered versions in a store (empty when no database was created)."""
    db = store / "mlflow.db"
    if not db.exists():
        return {"runs": [], "versions": []}
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()]) if client.search_experiments() else []
    return {"runs": [r.info.status for r in runs], "versions": [v.version for v in client.search_model_versions()]}


def assert_nothing_written(store: Path, *paths: Path) -> None:
    state = store_state(store)
    assert state == {"runs": [], "versions": []}, state
    for path in paths:
        assert not path.exists(), path
        assert not list(path.parent.glob(path.name + ".partial*")), path


# -- tables -------------------------------------------------------------------------------------
def mutate(col: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def f(frame: pd.DataFrame) -> pd.DataFrame:
        frame[col] = frame[col].astype(object)
        frame.loc[row, col] = value
        return frame
    return f


def ten_thousand_columns(frame: pd.DataFrame) -> pd.DataFrame:
    wide = pd.DataFrame(np.ones((20, 10_000)), columns=[f"v{i}" for i in range(10_000)])
    wide["class"] = np.arange(20) % 2
    return wide.rename(columns={"v5000": "x5000"})


# (id, the training file made from a good table (a frame, or a string for the file's text),
#  extra overrides, message pattern)
TRAIN_FILE_CASES = [
    ("empty file", lambda f: "", [], r"t\.csv: file is empty"),
    ("header only", lambda f: ",".join(f.columns) + "\n", [], r"t\.csv: file has no data rows"),
    ("odd column count", lambda f: f.drop(columns=["v7"]), [], r"7 feature columns is odd"),
    ("text value", mutate("v1", 3, "abc"), [], r"column 'v1' line 5 is not numeric: 'abc'"),
    ("NaN value", mutate("v2", 1, np.nan), [], r"column 'v2' line 3 is nan"),
    ("inf value", mutate("v0", 4, np.inf), [], r"column 'v0' line 6 is inf"),
    ("bool feature", lambda f: f.assign(v1=f["v1"] > 0), [], r"column 'v1' line 2 is not numeric"),
    ("label 2", mutate("class", 2, 2), [], r"label column 'class' line 4 is 2; labels must be 0 or 1"),
    ("labels -1/1", lambda f: f.assign(**{"class": 2 * f["class"] - 1}), [], r"line \d+ is -1; labels must be 0 or 1"),
    ("labels 'same'", lambda f: f.assign(**{"class": np.where(f["class"] == 1, "same", "different")}), [],
     r"label column 'class' line \d+ is '(same|different)'"),
    ("empty label", mutate("class", 5, np.nan), [], r"label column 'class' line 7 is nan"),
    ("one class", lambda f: f.assign(**{"class": 1}), [], r"only one class \(1\) present"),
    ("one row", lambda f: f.head(1), [], r"only one class"),
    ("10,000 columns, one misnamed", ten_thousand_columns, [], r"'x5000' are neither features"),
    ("label column missing", lambda f: f.drop(columns=["class"]), [], r"label column 'class' not found \(set data.label\)"),
    ("gap in v<i>", lambda f: f.rename(columns={"v7": "v9"}), [], r"v7 is missing"),
    ("duplicate header", lambda f: f.rename(columns={"v7": "v3"}), [], r"'v3\.1' are neither features"),
    ("index and id columns", lambda f: f.assign(id=range(len(f))).reset_index().rename(columns={"index": "Unnamed: 0"}),
     [], r"column\(s\) 'id' are neither features \(v0…v7\) nor the label 'class'"),
    ("unexplained column", lambda f: f.assign(note="x"), [], r"'note' are neither features .* data.ignore"),
    ("2 positives in 100 rows", lambda f: table(100, positives=2), [],
     r"2 'same' \(1\) and 98 'different' \(0\) pairs: too few .*\(data.min_class_count=5\)"),
    ("1 positive in 100 rows", lambda f: table(100, positives=1), [], r"1 'same' \(1\) and 99 'different'"),
    ("validation split short of a class", lambda f: table(60, positives=12, seed=3), ["data.val_fraction=0.1"],
     r"the validation split \(data.val_fraction=0.1\) has \d 'same' \(1\) .* change data.val_fraction"),
    ("prefixes that do not pair", lambda f: f.rename(columns={"v0": "a_x", "v1": "a_y", "v4": "b_x", "v5": "b_z"}),
     ["data.left=a_", "data.right=b_", "data.ignore=[v2,v3,v6,v7]"], r"'a_y', 'b_z' have no partner"),
    ("data.left without data.right", lambda f: f, ["data.left=v"], r"give both data.left and data.right"),
    ("list names a missing column", lambda f: f, ["data.left=[v0,v1]", "data.right=[v2,q]", "data.ignore=[v4,v5,v6,v7]"],
     r"'q' named in data.left / data.right not found"),
]


@pytest.fixture
def files(tmp_path: Path) -> SimpleNamespace:
    """A good train and test file; cases replace one of them."""
    return SimpleNamespace(dir=tmp_path, train=write(table(), tmp_path / "train.csv"),
                           test=write(table(100, seed=1), tmp_path / "test.csv"))


def csv_data(train: Path, test: Path) -> list[str]:
    return ["data=csv", f"data.train={train}", f"data.test={test}"]


@pytest.mark.parametrize("case, make, extra, message", TRAIN_FILE_CASES, ids=[c[0] for c in TRAIN_FILE_CASES])
def test_bad_training_file(make_cfg, store, files, case, make, extra, message):
    path, made = files.dir / "t.csv", make(table())
    path.write_text(made) if isinstance(made, str) else write(made, path)
    with pytest.raises(DataError) as err:
        train(make_cfg(*csv_data(path, files.test), *extra))
    assert re.search(message, one_line(err.value)), err.value
    assert_nothing_written(store)


def ragged(path: Path) -> Path:
    lines = path.read_text().splitlines()
    lines[3] += ",7"
    path.write_text("\n".join(lines) + "\n")
    return path


def semicolons(path: Path, **kwargs) -> Path:
    return write(table(), path, sep=";", decimal=",", **kwargs)


# (id, builds train and test from (dir, good train, good test), extra overrides, error class, pattern)
FILE_PAIR_CASES = [
    ("missing training file", lambda d, tr, te: (d / "nope.csv", te), [], DataError, r"nope\.csv: file not found"),
    ("directory as file", lambda d, tr, te: ((d / "adir").mkdir() or d / "adir", te), [], DataError, r"adir: is a directory"),
    ("gzip with NaN", lambda d, tr, te: (write(mutate("v3", 150, np.nan)(table()), d / "t.csv.gz"), te), [],
     DataError, r"t\.csv\.gz: column 'v3' line 152 is nan"),
    ("parquet text column", lambda d, tr, te: (write(table().astype({"v2": str}), d / "t.parquet"), te), [],
     DataError, r"t\.parquet: column 'v2' is (large_)?string, not numeric"),
    ("ragged row", lambda d, tr, te: (ragged(write(table(), d / "t.csv")), te), [], DataError,
     r"cannot be read as a table: Error tokenizing data"),
    ("semicolons read as commas", lambda d, tr, te: (semicolons(d / "t.csv"), te), ["data.sep=comma"], DataError,
     r"header is one field holding ';', so the file looks ;-separated: set data.sep=semicolon"),
    ("tabs read as commas", lambda d, tr, te: (write(table(), d / "t.csv", sep="\t"), te), ["data.sep=comma"], DataError,
     r"header is one field holding a tab, so the file looks tab-separated: set data.sep=tab"),
    ("decimal comma read as point", lambda d, tr, te: (semicolons(d / "t.csv"), te), ["data.decimal=point"], DataError,
     r"column 'v0' line 2 is not numeric: '-?\d+,\d+"),
    ("train/test width mismatch", lambda d, tr, te: (tr, write(table(100, d=3), d / "te.csv")), [], DataError,
     r"te\.csv: vectors are 3 wide but the training file's are 4"),
    ("test file with other names", lambda d, tr, te: (tr, write(table(100).rename(columns=lambda c: c.replace("v", "x")), d / "te.csv")),
     [], DataError, r"te\.csv: columns differ from the training file's \(missing 'v0', .*; extra 'x0'"),
    ("test file with an extra column", lambda d, tr, te: (tr, write(table(100).assign(id=1), d / "te.csv")), [],
     DataError, r"te\.csv: columns differ from the training file's \(extra 'id'\)"),
    ("test file missing a column", lambda d, tr, te: (tr, write(table(100).drop(columns=["v6"]), d / "te.csv")), [],
     DataError, r"missing 'v6'"),
    ("test file is the training file", lambda d, tr, te: (tr, tr), [], DataError, r"is the training file .*\(same sha256"),
    ("test file is a copy of the training file", lambda d, tr, te: (tr, Path(shutil.copy(tr, d / "copy.csv"))), [],
     DataError, r"copy\.csv is the training file"),
]


@pytest.mark.parametrize("case, make, extra, error, message", FILE_PAIR_CASES, ids=[c[0] for c in FILE_PAIR_CASES])
def test_bad_file_pair(make_cfg, store, files, case, make, extra, error, message):
    train_path, test_path = make(files.dir, files.train, files.test)
    with pytest.raises(error) as err:
        train(make_cfg(*csv_data(train_path, test_path), *extra))
    assert re.search(message, one_line(err.value)), err.value
    assert_nothing_written(store)


# -- configs: checked before any run opens --------------------------------------------------------
CONFIG_CASES = [
    ("model.width=-1", r"model.width=-1 must be an integer ≥ 1"),
    ("model.depth=0", r"model.depth=0 must be an integer ≥ 1"),
    ("model.embedding_dim=0", r"model.embedding_dim=0 must be an integer ≥ 1 \(or null\)"),
    ("model.dropout=1.0", r"model.dropout=1.0 must be a number in \[0, 1\)"),
    ("model.dropout=-0.1", r"model.dropout=-0.1 must be a number in \[0, 1\)"),
    ("model.distance=l3", r"model.distance='l3' is not one of \['l2', 'l1', 'cosine', 'learned'\]"),
    ("training.epochs=0", r"training.epochs=0 must be an integer ≥ 1"),
    ("training.batch_size=0", r"training.batch_size=0 must be an integer ≥ 1"),
    ("training.batch_size=abc", r"training.batch_size='abc' must be an integer ≥ 1"),
    ("training.epochs=2.5", r"training.epochs=2.5 must be an integer ≥ 1"),
    ("training.verbose=5", r"training.verbose=5 is not one of \[0, 1, 2\]"),
    ("training.early_stopping.patience=-1", r"patience=-1 must be an integer ≥ 0"),
    ("optimizer.learning_rate=-1", r"optimizer.learning_rate=-1 must be a number > 0"),
    ("optimizer.learning_rate=0", r"optimizer.learning_rate=0 must be a number > 0"),
    ("optimizer.weight_decay=-0.1", r"optimizer.weight_decay=-0.1 must be a number ≥ 0"),
    ("optimizer.name=sgd", r"optimizer.name='sgd' is not one of \['rmsprop', 'adam', 'adamw'\]"),
    ("data.val_fraction=0", r"data.val_fraction=0 must be a number in \(0, 1\)"),
    ("data.val_fraction=1.5", r"data.val_fraction=1.5 must be a number in \(0, 1\)"),
    ("data.min_class_count=0", r"data.min_class_count=0 must be an integer ≥ 1"),
    ("data.sep=colon", r"data.sep='colon' is not one of"),
    ("data.preprocess=whiten", r"data.preprocess='whiten' is not one of \['none', 'standardize', 'l2'\]"),
    ("data.ignore=id", r"data.ignore must be a list of column names"),
    ("seed=1.5", r"seed must be an integer, got 1.5"),
    ("model.width=[64,128]", r"model.width=\[64,128\] must be a single value, not a list; to try several values, "
                             r"search them"),
    ("training.epochs={a:1}", r"training.epochs=\{a:1\} must be a single value, not a mapping; to try"),
    ("training.early_stopping=5", r"training.early_stopping=5 must be a group of settings \(monitor, patience, "
                                  r"restore_best\), not a value; set one of them, e.g. training.early_stopping.monitor="),
    ("training.early_stopping=null", r"training.early_stopping=null must be a group of settings"),
]


@pytest.mark.parametrize("override, message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_setting_refused_before_any_run(make_cfg, store, override, message):
    with pytest.raises(ConfigError) as err:
        train(make_cfg(override))
    assert re.search(message, one_line(err.value)), err.value
    assert_nothing_written(store)


@pytest.mark.parametrize("overrides, message", [
    (["loss=contrastive", "loss.margin=0"], r"loss.margin=0 must be a number > 0"),
    (["loss=contrastive", "loss.margin=null"], r"loss.margin is null but loss=contrastive needs a margin > 0"),
    (["data.val_fraction=0.99"], r"data.val_fraction=0.99 leaves the digits' training pool 1 image\(s\) of some digit"),
], ids=["margin 0", "margin null", "val_fraction 0.99"])
def test_bad_combination_refused_before_any_run(make_cfg, store, overrides, message):
    with pytest.raises(UserError) as err:
        train(make_cfg(*overrides))
    assert re.search(message, one_line(err.value)), err.value
    assert_nothing_written(store)


# -- search spaces: checked before any baseline or trial ------------------------------------------
SPACE_CASES = [
    ("empty choice", {"model.width": {"type": "choice", "values": []}}, [], r"model.width choice needs a non-empty 'values'"),
    ("min > max", {"model.dropout": {"type": "float", "min": 0.5, "max": 0.1}}, [], r"range \[0.5, 0.1\] is empty"),
    ("log range from 0", {"optimizer.learning_rate": {"type": "float", "min": 0.0, "max": 0.1, "sampling": "log"}}, [],
     r"log sampling needs min > 0"),
    ("distance foo", {"model.distance": {"type": "choice", "values": ["foo", "bar"]}}, [],
     r"search space: model.distance='foo' is not one of"),
    ("loss hinge", {"loss.name": {"type": "choice", "values": ["bce", "hinge"]}}, [], r"loss.name='hinge' is not one of"),
    ("optimizer sgd", {"optimizer.name": {"type": "choice", "values": ["adam", "sgd"]}}, [], r"optimizer.name='sgd'"),
    ("preprocess whiten", {"data.preprocess": {"type": "choice", "values": ["none", "whiten"]}}, [], r"'whiten' is not one of"),
    ("activation mish", {"model.activation": {"type": "choice", "values": ["relu", "mish"]}}, [], r"model.activation='mish'"),
    ("dropout up to 1", {"model.dropout": {"type": "float", "min": 0.0, "max": 1.0}}, [],
     r"search space: model.dropout=1.0 must be a number in \[0, 1\)"),
    ("learning rate from 0", {"optimizer.learning_rate": {"type": "float", "min": 0.0, "max": 0.1}}, [],
     r"optimizer.learning_rate=0.0 must be a number > 0"),
    ("epochs fixed 0", {"training.epochs": {"type": "fixed", "value": 0}}, [], r"training.epochs=0 must be an integer ≥ 1"),
    ("batch size from 0", {"training.batch_size": {"type": "int", "min": 0, "max": 64}}, [], r"training.batch_size=0"),
    ("objective no run logs", {"model.depth": {"type": "int", "min": 1, "max": 2}}, ["search.objective=val_nope"],
     r"search.objective='val_nope' is not a metric a trial logs; use one of \[.*'val_auc'"),
    ("fixed-rule objective with BCE trials", {"model.depth": {"type": "int", "min": 1, "max": 2}},
     ["search.objective=val_accuracy_fixed"], r"logged only by distance heads .* \['bce'\]"),
    ("contrastive without a margin", {"loss.name": {"type": "choice", "values": ["bce", "contrastive"]}}, [],
     r"trials can have loss.name=contrastive, but loss.margin is null"),
]


@pytest.mark.parametrize("case, params, extra, message", SPACE_CASES, ids=[c[0] for c in SPACE_CASES])
def test_bad_space_refused_before_any_baseline_or_trial(make_cfg, store, tmp_path, case, params, extra, message):
    cfg = make_cfg(f"study_dir={tmp_path}/study", "study=t", "tuner.max_trials=2", *extra, config="tune")
    cfg.search.params = params
    with pytest.raises(ConfigError) as err:
        tune(cfg)
    assert re.search(message, one_line(err.value)), err.value
    assert_nothing_written(store)
    assert not (tmp_path / "study").exists()


# -- models: read from their files first, never their code ---------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory, digits_cache) -> SimpleNamespace:
    """An untrained siamese bundle (v0 … v7), registered once; a foreign pyfunc model whose code
    writes a marker file when run; a bundle holding a Lambda layer (refused by Keras' safe mode)."""
    root = tmp_path_factory.mktemp("models")
    store = root / "mlruns"
    store.mkdir()
    cfg = compose_cfg(store, digits_cache, config="train")
    bundle = ModelBundle(build_model(D, cfg.model, "logit"), Preprocessor("none"), "logit", 0.0, 0.0,
                         {"label": "class", "left": FEATURES[:D], "right": FEATURES[D:], "ignore": []})
    folder = bundle.save(root / "bundle")
    marker = root / "foreign-code-ran"
    code = root / "foreign_code.py"
    code.write_text(
        "import pathlib, mlflow\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "class Foreign(mlflow.pyfunc.PythonModel):\n"
        f"    def load_context(self, context): pathlib.Path({str(marker)!r}).write_text('loaded')\n"
        "    def predict(self, context, model_input, params=None): return model_input\n"
        "mlflow.models.set_model(Foreign())\n")
    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    experiment = mlflow.create_experiment("models", artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        version = mlflow.register_model(log_pyfunc(bundle).model_uri, "siamese-good").version
        # As promote does for a winner that does not beat its best baseline: challenger, not champion.
        mlflow.MlflowClient().set_registered_model_alias("siamese-good", "challenger", version)
        mlflow.pyfunc.log_model(name="model", python_model=str(code), registered_model_name="foreign")
    foreign = root / "foreign"
    mlflow.pyfunc.save_model(path=str(foreign), python_model=str(code))
    lam = root / "lambda"
    shutil.copytree(folder, lam)
    inputs = [keras.Input((D,), name="left"), keras.Input((D,), name="right")]
    out = keras.layers.Lambda(lambda t: t[0] - t[1])(inputs)
    keras.Model(inputs, out).save(lam / "model.keras")
    broken = root / "broken"
    shutil.copytree(folder, broken)
    (broken / "bundle.json").write_text("{not json")
    empty = root / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a model")
    marker.unlink(missing_ok=True)  # saving ran the foreign code; from here on it must not run again
    return SimpleNamespace(root=root, store=store, bundle=bundle, folder=folder, foreign=foreign, marker=marker,
                           lam=lam, broken=broken, empty=empty, digits_cache=digits_cache)


def predict_cfg(models: SimpleNamespace, *overrides: str, config: str = "predict"):
    return compose_cfg(models.store, models.digits_cache, *overrides, config=config)


MODEL_CASES = [
    ("no such registered model", lambda m: "models:/siamese-nope@champion", r"siamese-nope"),
    ("no such alias", lambda m: "models:/siamese-good@champion",
     r"cannot load model models:/siamese-good@champion: .*champion.*; siamese-good has @challenger \(v1\): use one "
     r"of those, e\.g\. model=models:/siamese-good@challenger, or promote\.force=true"),
    ("no such run", lambda m: "runs:/0123456789abcdef/model", r"cannot load model runs:/0123456789abcdef/model"),
    ("no such folder", lambda m: str(m.root / "nowhere"), r"cannot load model .*nowhere"),
    ("a folder that is not a model", lambda m: str(m.empty), r"holds neither a siamese model \(bundle.json\) nor an MLflow model"),
    ("a foreign MLflow model folder", lambda m: str(m.foreign),
     r"is an MLflow model, but not one logged by siamese .* refused without loading it"),
    ("a foreign registered model", lambda m: "models:/foreign/1", r"models:/foreign/1 is an MLflow model, but not one logged by siamese"),
    ("a Lambda layer (unsafe)", lambda m: str(m.lam), r"not a loadable siamese model \(ValueError: .*Lambda"),
    ("a broken bundle.json", lambda m: str(m.broken), r"not a loadable siamese model \(JSONDecodeError"),
]


@pytest.mark.parametrize("case, uri, message", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_bad_model_uri(models, tmp_path, case, uri, message):
    before = store_state(models.store)
    out = tmp_path / "scored.csv"
    source = write(table(20), tmp_path / "pairs.csv")
    with pytest.raises(UserError) as err:
        predict(predict_cfg(models, f"model_uri={uri(models)}", f"input={source}", f"output={out}"))
    assert re.search(message, one_line(err.value)), err.value
    assert not models.marker.exists(), "the foreign model's code ran"
    assert not out.exists() and store_state(models.store) == before


def test_foreign_model_refused_by_export_and_would_have_run(models, tmp_path):
    out = tmp_path / "exported"
    with pytest.raises(UserError, match="not one logged by siamese"):
        export(predict_cfg(models, f"model_uri={models.foreign}", f"out={out}", config="export"))
    assert not out.exists() and not models.marker.exists()
    # The marker is real: loading the model the way MLflow does runs its code and writes it.
    mlflow.pyfunc.load_model(str(models.foreign))
    assert models.marker.read_text() == "loaded"
    models.marker.unlink()


# -- predict inputs: read by the model's column names ----------------------------------------------
PREDICT_CASES = [
    ("wrong width", lambda d: table(20, d=3), [], r"columns differ from the model's \(missing 'v6', 'v7'\)"),
    ("missing column", lambda d: table(20).drop(columns=["v5"]), [], r"missing 'v5'"),
    ("extra column", lambda d: table(20).assign(id=7), [], r"pairs\.csv: columns differ from the model's \(extra 'id'\)"),
    ("NaN", lambda d: mutate("v3", 2, np.nan)(table(20)), [], r"column 'v3' line 4 is nan"),
    ("text", lambda d: mutate("v6", 9, "x")(table(20)), [], r"column 'v6' line 11 is not numeric: 'x'"),
    ("label outside 0/1", lambda d: mutate("class", 0, 5)(table(20)), [], r"label column 'class' line 2 is 5"),
    ("header only", lambda d: table(20).head(0), [], r"file has no data rows"),
]


@pytest.mark.parametrize("case, frame, extra, message", PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES])
def test_bad_predict_input(models, tmp_path, case, frame, extra, message):
    source, out = write(frame(D), tmp_path / "pairs.csv"), tmp_path / "scored.csv"
    with pytest.raises(DataError) as err:
        predict(predict_cfg(models, f"model_uri={models.folder}", f"input={source}", f"output={out}", "chunk_size=8"))
    assert re.search(message, one_line(err.value)), err.value
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_predict_drops_the_columns_listed_in_data_ignore(models, tmp_path):
    """The error for an extra column says to list it in data.ignore; predict honours that."""
    source, out = write(table(20).assign(note=3), tmp_path / "pairs.csv"), tmp_path / "scored.csv"
    with pytest.raises(DataError, match="extra 'note'"):
        predict(predict_cfg(models, f"model_uri={models.folder}", f"input={source}", f"output={out}"))
    result = predict(predict_cfg(models, f"model_uri={models.folder}", f"input={source}", f"output={out}",
                                 "data.ignore=[note]"))
    assert result["rows"] == 20 and list(pd.read_csv(out).columns)[-3:] == ["note", "score", "prediction"]


@pytest.mark.parametrize("options, message", [
    (lambda p, o: [f"input={p.parent / 'nope.csv'}", f"output={o}"], r"nope\.csv: file not found"),
    (lambda p, o: [f"input={p}", f"output={p}"], r"would overwrite the input"),
    (lambda p, o: [f"input={p}", f"output={o.with_suffix('.parquet')}"], r"predictions are written as CSV"),
    (lambda p, o: [f"input={p}", f"output={o}", "chunk_size=0"], r"chunk_size must be at least 1, got 0"),
], ids=["missing input", "output is the input", "output not CSV", "chunk size 0"])
def test_bad_predict_options(models, tmp_path, options, message):
    source, out = write(table(20), tmp_path / "pairs.csv"), tmp_path / "scored.csv"
    with pytest.raises(UserError) as err:
        predict(predict_cfg(models, f"model_uri={models.folder}", *options(source, out)))
    assert re.search(message, one_line(err.value)), err.value
    assert not out.exists() and source.read_text().startswith("v0,")


# -- tracking stores ------------------------------------------------------------------------------
def garbage(folder: Path) -> str:
    (folder / "junk.db").write_text("this is not a database " * 20)
    return f"sqlite:///{folder}/junk.db"


TRACKING_CASES = [
    ("unreachable server", lambda d: "http://127.0.0.1:9", r"tracking server http://127.0.0.1:9 is unreachable"),
    ("unopenable SQLite path", lambda d: "sqlite:////proc/x.db", r"sqlite:////proc/x.db: cannot create x.db in /proc"),
    ("unwritable folder", lambda d: "sqlite:////sys/x.db", r"cannot create x.db in /sys \(Permission denied\)"),
    ("folder that cannot be made", lambda d: "sqlite:////sys/siamese/x.db", r"cannot create the tracking store folder /sys/siamese"),
    ("database path is a folder", lambda d: (d / "db").mkdir() or f"sqlite:///{d}/db",
     r"cannot be opened for writing as a SQLite database \(unable to open database file\)"),
    ("not a database", garbage, r"junk.db cannot be opened for writing as a SQLite database \(file is not a database\)"),
    ("parent is a file", lambda d: garbage(d) + "/x.db", r"cannot create the tracking store folder .*junk.db"),
]


@pytest.mark.parametrize("case, uri, message", TRACKING_CASES, ids=[c[0] for c in TRACKING_CASES])
def test_bad_tracking_store(make_cfg, store, tmp_path, case, uri, message):
    with pytest.raises(TrackingError) as err:
        train(make_cfg(f"tracking.uri={uri(tmp_path)}"))
    assert re.search(message, one_line(err.value)), err.value
    assert_nothing_written(store)


def test_predict_reads_inputs_by_name(models, tmp_path):
    """Wrong today 15 and 2: an input in another column order, with a saved index, scores the same."""
    frame = table(30)
    shuffled = frame[list(np.random.default_rng(2).permutation(frame.columns))]
    ordered = predict(predict_cfg(models, f"model_uri={models.folder}", f"input={write(frame, tmp_path / 'a.csv')}",
                                  f"output={tmp_path / 'a.scored.csv'}"))
    other = predict(predict_cfg(models, f"model_uri={models.folder}",
                                f"input={write(shuffled, tmp_path / 'b.csv', index=True)}", f"output={tmp_path / 'b.scored.csv'}"))
    a, b = pd.read_csv(tmp_path / "a.scored.csv"), pd.read_csv(tmp_path / "b.scored.csv")
    np.testing.assert_array_equal(a["score"], b["score"])
    assert ordered["metrics"] == other["metrics"] and list(b.columns[:2]) == ["Unnamed: 0", shuffled.columns[0]]


# -- the CLI: a UserError is one line and exit 2; training that fails is one line and exit 1 ---------
def stderr_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def report_cli(store: Path, *args: str):
    """``siamese.report`` (no TensorFlow): the same entry wrapper as every task, cheap to start."""
    return run_cli("report", *tracking_overrides(store), *args, timeout=120)


def test_cli_keeps_hydras_caret_for_an_unquoted_non_ascii_path(store):
    proc = report_cli(store, "data.train=/tmp/données/x.csv")
    lines = stderr_lines(proc)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0] == "error: LexerNoViableAltException: data.train=/tmp/données/x.csv"
    assert lines[1].strip() == "^" and lines[1].index("^") == lines[0].index("é")  # under the culprit
    assert any("hydra.cc/docs" in line for line in lines) and lines[-1].startswith("hint: quote the value")
    assert store_state(store) == {"runs": [], "versions": []}


def test_cli_keeps_hydras_quoting_hint_for_a_comma_in_a_path(store):
    proc = report_cli(store, "data.train=/tmp/a,b/x.csv")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert stderr_lines(proc)[0] == "error: Ambiguous value for argument 'data.train=/tmp/a,b/x.csv'"
    assert "2. To use it as string, quote the value: key=\\'value1,value2\\'" in proc.stderr


@pytest.mark.parametrize("module, override, beside, meant", [
    ("train", "+training.epoch=3", "training.epochs", "training.epochs=3"),
    ("report", "+report.byy=loss", "report.by", "report.by=loss"),
    ("tune", "+seeds=3", "seed", "seed=3"),
    ("report", "+reprot.by=loss", "report", "report.by=loss"),  # a misspelt parent
    ("report", "+report.BY=loss", "report.by", "report.by=loss"),  # another case
    ("report", "++report.byy=loss", "report.by", "report.by=loss"),  # '++' adds a key too
    ("train", "+training.early_stopping.patince=3", "training.early_stopping.patience",
     "training.early_stopping.patience=3"),
], ids=["train", "report", "top level", "parent", "case", "plus plus", "nested"])
def test_cli_added_key_beside_one_spelled_alike_is_one_line_exit_2(store, module, override, beside, meant):
    proc = run_cli(module, *tracking_overrides(store), override, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert stderr_lines(proc) == [f"error: {override} adds a key that nothing reads, beside {beside}; did you mean "
                                  f"{meant} (without '+')?"]
    assert store_state(store) == {"runs": [], "versions": []}


@pytest.mark.parametrize("module, key", [("train", "data.implied_pairs"), ("tune", "training.epochs")])
def test_cli_plus_on_a_key_that_exists_says_to_drop_the_plus(store, module, key):
    proc = run_cli(module, *tracking_overrides(store), f"+{key}=3", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert stderr_lines(proc) == [f"error: Could not append to config. An item is already at '{key}'. ({key} is "
                                  f"already a setting: give it without the '+', {key}=…)"]
    assert store_state(store) == {"runs": [], "versions": []}


@pytest.mark.parametrize("override", [
    "+report.note=hello",          # no near namesake: Hydra's to allow
    "++data.n_train=600",          # a key another data config defines (digits'), next to data.train
    "+data@x=csv",                 # Hydra's package syntax, not a key
], ids=["no namesake", "another option's key", "package"])
def test_cli_added_key_that_is_no_typo_is_left_to_the_task(store, override):
    proc = report_cli(store, "data=mnist5k" if "n_train" in override else "seed=0", override)
    assert "adds a key that nothing reads" not in proc.stderr, proc.stderr


def test_an_added_key_some_config_defines_is_never_refused():
    # An older model config without head_depth (the code reads it with a default) gets it added: head_depth
    # is as close to head_width as a typo would be (difflib 0.8), but conf/model/mlp.yaml defines it.
    cfg = compose_config("train", ["model.distance=learned"])
    OmegaConf.set_struct(cfg, False)
    del cfg.model["head_depth"]
    cfg.model["head_depth"] = 2
    check_added_keys(cfg, ["+model.head_depth=2"])
    cfg.model["head_dept"] = 2
    with pytest.raises(ConfigError, match=r"beside model.head_depth; did you mean model.head_depth=2"):
        check_added_keys(cfg, ["+model.head_dept=2"])


def test_cli_unopenable_store_is_one_line(tmp_path):
    proc = run_cli("report", "tracking.uri=sqlite:////proc/x.db", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert stderr_lines(proc) == ["error: tracking store sqlite:////proc/x.db: cannot create x.db in /proc (No such file "
                                  "or directory); set tracking.uri=sqlite:///<a writable folder>/mlflow.db"]


@pytest.mark.slow
def test_cli_class_minimum_is_one_line_exit_2_before_any_run(store, tmp_path):
    train_path = write(table(100, positives=2), tmp_path / "train.csv")
    proc = run_cli("train", *tracking_overrides(store), *csv_data(train_path, write(table(100, seed=1), tmp_path / "te.csv")))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert stderr_lines(proc) == [f"error: {train_path}: 2 'same' (1) and 98 'different' (0) pairs: too few to keep at "
                                  "least 5 of each class in both the training and the validation split "
                                  "(data.min_class_count=5); add pairs of the rarer class"]
    assert_nothing_written(store)


@pytest.mark.slow
def test_cli_diverged_run_is_one_line_exit_1_and_a_traceback_only_when_debugging(store, tmp_path):
    data = csv_data(write(table(200, scale=1e18), tmp_path / "huge.csv"), write(table(100, seed=1), tmp_path / "te.csv"))
    args = [*tracking_overrides(store), *data, "loss=contrastive", "training.epochs=1", "training.verbose=0"]
    proc = run_cli("train", *args)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = stderr_lines(proc)
    assert re.fullmatch(r"error: training diverged: loss is nan at epoch 1 \(features up to [\d.]+e18; "
                        r"try data.preprocess=standardize\)", line), line
    assert store_state(store)["runs"] == ["FAILED"]
    debug = run_cli("train", *args, env={"SIAMESE_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert stderr_lines(debug)[-1] == line
    assert store_state(store)["runs"] == ["FAILED", "FAILED"]


@pytest.mark.slow
def test_cli_foreign_model_refused_before_its_code_runs(models, tmp_path):
    out = tmp_path / "scored.csv"
    proc = run_cli("predict", *tracking_overrides(models.store), f"model={models.foreign}",
                   f"input={write(table(20), tmp_path / 'pairs.csv')}", f"output={out}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = stderr_lines(proc)
    assert line.startswith(f"error: {models.foreign} is an MLflow model, but not one logged by siamese")
    assert not models.marker.exists() and not out.exists()


@pytest.mark.slow
def test_cli_study_whose_every_trial_fails_names_the_reason(store, tmp_path):
    """Wrong today 8: one line and exit 1 naming the most common reason; baselines FAILED, not FINISHED."""
    conf = tmp_path / "conf" / "search"
    conf.mkdir(parents=True)
    (conf / "depth.yaml").write_text("name: depth\nobjective: val_auc\ndirection: max\n"
                                     "params:\n  model.depth: {type: int, min: 1, max: 2}\n")
    data = csv_data(write(table(200, scale=1e30), tmp_path / "huge.csv"), write(table(100, seed=1), tmp_path / "te.csv"))
    proc = run_cli("tune", *tracking_overrides(store), *data, f"hydra.searchpath=[file://{tmp_path}/conf]",
                   "search=depth", "tuner=grid", "tuner.max_trials=2", "loss=contrastive", "training.epochs=1",
                   "trial_figures=false", f"study_dir={tmp_path}/study", "study=dv", timeout=600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = stderr_lines(proc)
    assert re.fullmatch(r"error: every trial of study 'dv' failed; most common reason: training diverged: loss is "
                        r"(nan|inf) at epoch 1 \(features up to [\d.]+e30; try data.preprocess=standardize\) "
                        r"\(2 of 2 trials\)", line), line
    assert proc.stdout.count("its run is FAILED") == 2  # both baselines
    assert sorted(store_state(store)["runs"]) == ["FAILED"] * 5  # parent, two baselines, two trials
