"""Inputs that must be read right (issue 11's other half): columns by name whatever their order,
saved indexes dropped, other separators and decimal marks sniffed, leakage counted, divergence and
baselines that cannot score reported honestly, and the export recipe on zero vectors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from siamese.data import Preprocessor, load_dataset, read_pairs, read_table
from siamese.engine import Diverged
from siamese.paths import project_root
from siamese.train import train
from test_bad_inputs import table, write


def csv_cfg(make_cfg, train_path, test_path, *extra, config="train"):
    return make_cfg("data=csv", f"data.train={train_path}", f"data.test={test_path}", *extra, config=config)


def same_data(a, b) -> None:
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, split).left, getattr(b, split).left)
        np.testing.assert_array_equal(getattr(a, split).right, getattr(b, split).right)
        np.testing.assert_array_equal(getattr(a, split).y, getattr(b, split).y)


def test_columns_by_name_whatever_the_file_order(make_cfg, tmp_path):
    """Wrong today 1 and 2: columns sorted as text, and a test file in another order."""
    frame, test = table(120, d=8), table(60, d=8, seed=1)
    as_text = sorted(frame.columns)  # v0, v1, v10, … v15, v2, … class
    assert as_text[:3] == ["class", "v0", "v1"] and as_text[3] == "v10"
    ordered = load_dataset(csv_cfg(make_cfg, write(frame, tmp_path / "a.csv"), write(test, tmp_path / "b.csv")).data, 0)
    shuffled_test = test[list(np.random.default_rng(0).permutation(test.columns))]
    other = load_dataset(csv_cfg(make_cfg, write(frame[as_text], tmp_path / "c.csv"),
                                 write(shuffled_test, tmp_path / "d.csv")).data, 0)
    same_data(ordered, other)
    assert other.columns.left == [f"v{i}" for i in range(8)] and other.columns.right == [f"v{i}" for i in range(8, 16)]
    np.testing.assert_array_equal(other.test.left, test[[f"v{i}" for i in range(8)]].to_numpy(np.float32))


@pytest.mark.parametrize("save, dropped", [
    (lambda f, p: f.to_csv(p, index=True), ["Unnamed: 0"]),
    (lambda f, p: f.reset_index().to_csv(p, index=False), ["index"]),
    (lambda f, p: f.set_axis(np.arange(len(f))[::-1]).to_parquet(p), ["__index_level_0__"]),  # not a RangeIndex
    (lambda f, p: f.assign(id=np.arange(len(f)), text="a b").to_csv(p, index=False), ["id", "text"]),
], ids=["Unnamed: 0", "index", "__index_level_0__", "data.ignore"])
def test_index_and_ignored_columns_are_dropped_with_a_notice(make_cfg, tmp_path, save, dropped):
    """Wrong today 3: a saved index (alone or with an id column listed in data.ignore) is no feature."""
    frame, test = table(), table(100, seed=1)
    path = tmp_path / ("t.parquet" if "__index" in dropped[0] else "t.csv")
    save(frame, path)
    ignore = [f"data.ignore=[{','.join(dropped)}]"] if "id" in dropped else []
    got = load_dataset(csv_cfg(make_cfg, path, write(test, tmp_path / "te.csv"), *ignore).data, 0)
    plain = load_dataset(csv_cfg(make_cfg, write(frame, tmp_path / "plain.csv"), tmp_path / "te.csv").data, 0)
    same_data(got, plain)
    note = next(n for n in got.notes if "dropped" in n)
    assert all(repr(c) in note for c in dropped) and str(path) in note


@pytest.mark.parametrize("save", [
    lambda f, p: f.to_csv(p, sep=";", decimal=",", index=False),
    lambda f, p: f.to_csv(p, sep="\t", index=False),
    lambda f, p: f.to_csv(p, sep="|", decimal=",", index=False),
    lambda f, p: f.to_csv(p, index=False, encoding="utf-8-sig"),
    lambda f, p: f.to_csv(p.with_suffix(".csv.gz"), index=False),
    lambda f, p: f.to_parquet(p.with_suffix(".parquet")),
], ids=["semicolon + decimal comma", "tab", "pipe + decimal comma", "BOM", "gzip", "parquet"])
def test_other_dialects_and_formats_read_like_the_plain_csv(tmp_path, save):
    """Wrong today 4: a ;-separated file with decimal commas is sniffed, not misread."""
    frame = table()
    save(frame, tmp_path / "t.csv")
    (path,) = [p for p in tmp_path.iterdir() if p.name.startswith("t.")]
    got, spec = read_pairs(path)
    expected, _ = read_pairs(write(frame, tmp_path / "plain.csv"))
    np.testing.assert_array_equal(got.buffer, expected.buffer)
    np.testing.assert_array_equal(got.y, expected.y)
    assert spec.label == "class" and spec.left[0] == "v0"


def test_ten_thousand_columns_read_by_index(tmp_path):
    frame = table(12, d=5000)
    shuffled = frame[list(np.random.default_rng(1).permutation(frame.columns))]
    got = read_table(write(shuffled, tmp_path / "wide.csv"))
    np.testing.assert_array_equal(got.pairs.left, frame[[f"v{i}" for i in range(5000)]].to_numpy(np.float32))
    np.testing.assert_array_equal(got.pairs.right, frame[[f"v{i}" for i in range(5000, 10_000)]].to_numpy(np.float32))


def test_columns_printed_once_logged_and_leakage_counted(make_cfg, store, tmp_path, capsys):
    """Wrong today 6: test rows that repeat training rows, and duplicate rows across the validation
    cut, are counted (logged as metrics) and warned about in one line; the run still finishes."""
    frame = table(200)
    frame = pd.concat([frame, frame.iloc[:40]], ignore_index=True)  # 40 pairs twice: some straddle the cut
    test = pd.concat([frame.iloc[:30], table(70, seed=1)], ignore_index=True)
    # data.split=random: a grouped split would keep the repeated pairs on one side of the cut.
    cfg = csv_cfg(make_cfg, write(frame, tmp_path / "tr.csv"), write(test, tmp_path / "te.csv"), "data.split=random")
    data = load_dataset(cfg.data, int(cfg.seed))
    capsys.readouterr()
    train(cfg)
    out = capsys.readouterr().out
    assert out.count("columns: left v0…v3 (4), right v4…v7 (4), label 'class'") == 1
    warnings = [line for line in out.splitlines() if line.startswith("warning: leakage")]
    # Independently: a test pair is seen when a side is among the training file's vectors, and
    # leaks both sides when both are.
    vectors = {row.tobytes() for row in np.vstack([frame.iloc[:, :4], frame.iloc[:, 4:8]]).astype(np.float32)}
    sides = test.iloc[:, :8].to_numpy(np.float32)
    both = sum(a.tobytes() in vectors and b.tobytes() in vectors for a, b in zip(sides[:, :4], sides[:, 4:]))
    seen = sum(a.tobytes() in vectors or b.tobytes() in vectors for a, b in zip(sides[:, :4], sides[:, 4:]))
    pairs = {tuple(sorted((a.tobytes(), b.tobytes()))) for a, b in zip(data.train.left, data.train.right)}
    dup = sum(tuple(sorted((a.tobytes(), b.tobytes()))) in pairs for a, b in zip(data.val.left, data.val.right))
    assert both == 30 and seen >= both and dup > 0
    assert warnings == [f"warning: leakage: {seen} of 100 test pairs have a side identical to a training vector "
                        f"({both} both sides), {dup} of {len(data.val)} validation pairs repeat a training pair (logged "
                        "as test_pairs_seen_in_train, test_pairs_both_sides_in_train, val_pairs_duplicated_in_train): "
                        "test figures may flatter the model; validation scores pairs the model trained on "
                        "(data.split=grouped keeps them apart)"]
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("csv").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_pairs_seen_in_train"] == seen and run.data.metrics["val_pairs_duplicated_in_train"] == dup
    assert run.data.metrics["test_pairs_both_sides_in_train"] == both
    logged = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/columns.json"))
    assert logged["left"] == ["v0", "v1", "v2", "v3"] and logged["label"] == "class" and logged["notes"][0].startswith("columns:")


def test_divergence_fails_the_run_with_a_scale_hint(make_cfg, store, tmp_path):
    """Wrong today 7 (in-process half; the CLI's one line and exit 1 are test_cli_diverged_*)."""
    huge = write(table(200, scale=1e18), tmp_path / "huge.csv")
    cfg = csv_cfg(make_cfg, huge, write(table(100, seed=1), tmp_path / "te.csv"), "loss=contrastive",
                  "training.epochs=1")
    with pytest.raises(Diverged) as err:
        train(cfg)
    message = str(err.value)
    assert re.fullmatch(r"training diverged: loss is nan at epoch 1 \(features up to [\d.]+e18; "
                        r"try data.preprocess=standardize\)", message), message
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("csv").experiment_id])
    assert run.info.status == "FAILED" and message in run.data.tags["failure_reason"]


def test_baselines_that_cannot_score_are_failed(make_cfg, store, tmp_path, capsys):
    """Wrong today 8 (baselines): at 1e30 cosine overflows to NaN and the logistic fit sees inf."""
    from siamese import engine
    from siamese.baselines import LogisticSettings
    from siamese.study import StudySettings
    from siamese.tune import run_baselines

    huge = write(table(200, scale=1e30), tmp_path / "huge.csv")
    cfg = csv_cfg(make_cfg, huge, write(table(100, seed=1), tmp_path / "te.csv"), f"study_dir={tmp_path}/s", config="tune")
    spec, tracker, data = engine.prepare(cfg)
    with tracker.run("parent") as parent:
        scored = run_baselines(tracker, StudySettings.of(cfg), data, set(), LogisticSettings.of(cfg.get("logistic")))
    assert scored == {}
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted((r.data.tags["baseline"], r.info.status) for r in children) == [("cosine", "FAILED"), ("logistic", "FAILED")]
    assert all(r.data.tags["failure_reason"].startswith("BaselineFailed: ") for r in children)
    assert not any(r.data.metrics for r in children)  # no NaN metric logged as if it were a result
    out = capsys.readouterr().out
    assert out.count("its run is FAILED") == 2 and "warning: baseline cosine cannot score this data" in out


def _snippet() -> str:
    readme = (project_root() / "README.md").read_text()
    return re.search(r"<!-- export-snippet -->\s*```python\n(.*?)```", readme, re.S).group(1)


def test_export_recipe_keeps_zero_vectors_finite():
    """Wrong today 9: the README's ``prep`` with the exported norm floor equals the product's
    preprocessing, zero rows included (the end-to-end scores are test_export_scores_zero_rows)."""
    from siamese.data.split import NORM_FLOOR

    (line,) = [ln for ln in _snippet().splitlines() if ln.startswith("def prep")]
    x = np.vstack([np.zeros((3, 5)), np.random.default_rng(0).normal(size=(4, 5))]).astype(np.float32)
    meta = {"l2_normalize": True, "norm_floor": NORM_FLOOR, "mean": np.zeros(5), "scale": np.ones(5)}
    scope = {"np": np, "meta": meta}
    exec(line, scope)
    got = scope["prep"](x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, Preprocessor("l2").transform(x), rtol=1e-6, atol=0)


@pytest.mark.slow
def test_export_scores_zero_rows(make_cfg, digits_files, tmp_path):
    """The exported model + README snippet, run without siamese, score zero vectors as the product does."""
    from siamese.export import export_bundle
    from siamese.registry import load_bundle

    train(make_cfg("model.distance=cosine", "data.preprocess=l2", "training.epochs=1"))
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    bundle = load_bundle(f"runs:/{run.info.run_id}/model")
    out = export_bundle(bundle, tmp_path / "exported", "test")
    frame = pd.read_csv(digits_files[1]).head(100)
    features = [c for c in frame.columns if c != "class"]
    zeros = pd.DataFrame(np.zeros((20, len(features))), columns=features)
    half = frame[features].head(10).copy()
    half[features[:64]] = 0.0  # one side zero
    pairs = pd.concat([frame[features], zeros, half], ignore_index=True)
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    code = (_snippet().replace('"DIR', f'"{out}').replace('"pairs.csv"', f'"{tmp_path}/pairs.csv"')
            + "\nimport json as j; print(j.dumps({'score': score.tolist(), 'same': same.tolist()}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    s, pred = bundle.predict(bundle.pairs(pairs))
    assert np.isfinite(got["score"]).all() and len(got["score"]) == 130
    np.testing.assert_allclose(got["score"], s, atol=1e-5)
    assert got["same"] == [bool(p) for p in pred]


@pytest.mark.parametrize("split, warned", [("random", True), ("grouped", False)])
def test_validation_pairs_that_repeat_training_pairs_warn_of_validation_not_test(make_cfg, tmp_path, split, warned):
    """A test file disjoint from training but pairs repeated across a random validation cut: the one
    warning line says what is at risk (validation, and the split that keeps them apart), not the test
    figures; a grouped split has nothing to warn about."""
    frame = table(200)
    frame = pd.concat([frame, frame.iloc[:60]], ignore_index=True)
    cfg = csv_cfg(make_cfg, write(frame, tmp_path / "tr.csv"), write(table(100, seed=1), tmp_path / "te.csv"),
                  f"data.split={split}")
    data = load_dataset(cfg.data, int(cfg.seed))
    warnings = [n for n in data.notes if n.startswith("warning: leakage")]
    assert data.overlap["test_pairs_seen_in_train"] == 0
    assert (data.overlap["val_pairs_duplicated_in_train"] > 0) == warned
    assert warnings == ([f"warning: leakage: 0 of 100 test pairs have a side identical to a training vector (0 both "
                         f"sides), {int(data.overlap['val_pairs_duplicated_in_train'])} of {len(data.val)} validation "
                         "pairs repeat a training pair (logged as test_pairs_seen_in_train, test_pairs_both_sides_in_train, "
                         "val_pairs_duplicated_in_train): validation scores pairs the model trained on "
                         "(data.split=grouped keeps them apart)"] if warned else [])
