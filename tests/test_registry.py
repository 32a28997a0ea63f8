"""Promote, predict, serve and export, on a small real study in a tmp store (shared per module)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from siamese.cli import rewrite_argv
from siamese.errors import DataError, UserError
from siamese.export import export
from siamese.paths import project_root
from siamese.predict import predict
from siamese.promote import promote
from siamese.registry import load_bundle
from siamese.tune import tune

from conftest import compose_cfg, run_cli, tracking_overrides

DATA = ["++data.n_train=600", "++data.n_test=200"]
MODEL = "models:/siamese-digits@champion"


@pytest.fixture(scope="module")
def reg(tmp_path_factory, digits_cache, digits_files):
    """A 2-trial digits study promoted once: version 1 is the champion."""
    root = tmp_path_factory.mktemp("registry")
    store = root / "mlruns"
    store.mkdir()

    def cfg(*overrides: str, config: str):
        return compose_cfg(store, digits_cache, *DATA, *overrides, config=config)

    # No baselines, no confirmation: these tests are about the registry (test_promote_honest.py has those).
    train_opts = ["training.epochs=3", "training.verbose=0", "tuner.max_trials=2", "baselines=false", "confirm.top_k=0"]
    tune(cfg(f"study_dir={root}/good", "study=good", *train_opts, config="tune"))
    first = promote(cfg("study=good", config="promote"))
    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    return SimpleNamespace(root=root, store=store, cfg=cfg, first=first, test_file=digits_files[1],
                           client=MlflowClient(f"sqlite:///{store}/mlflow.db"), train_opts=train_opts)


def _state(client: MlflowClient) -> tuple:
    versions = client.search_model_versions("name = 'siamese-digits'")
    model = client.get_registered_model("siamese-digits")
    runs = mlflow.search_runs(search_all_experiments=True)
    return sorted(v.version for v in versions), dict(model.aliases), len(runs)


@pytest.mark.slow
def test_promotion_registers_a_described_champion(reg):
    version = reg.client.get_model_version_by_alias("siamese-digits", "champion")
    assert reg.first["alias"] == "champion" and str(version.version) == reg.first["version"] == "1"
    tags = version.tags
    assert tags["source_run_id"] == reg.first["source_run_id"] and tags["study"] == "good"
    assert len(tags["data_test_sha256"]) == 64 and not set(tags) & {*reg.first["test_metrics"], "val_auc", "val_accuracy"}
    # The version's source run is the winning trial; its metrics are on the logged model.
    assert version.run_id == reg.first["source_run_id"]
    assert version.source.startswith("models:/m-")  # a logged model (the SQL store leaves model_id unset)
    model = reg.client.get_logged_model(version.source.removeprefix("models:/"))
    assert model.source_run_id == reg.first["source_run_id"]
    metrics = {m.key: m.value for m in model.metrics}
    assert metrics["test_accuracy"] == pytest.approx(reg.first["test_metrics"]["test_accuracy"], abs=1e-6)
    assert "val_auc" in metrics
    assert "Resolved config" in version.description and "loss:" in version.description
    # The source is the best trial by validation objective, never by test.
    trials = mlflow.search_runs(search_all_experiments=True, filter_string="tags.kind = 'trial' and tags.study = 'good'")
    assert reg.first["source_run_id"] == trials.sort_values("metrics.val_auc", ascending=False)["run_id"].iloc[0]
    assert reg.first["test_metrics"]["test_auc"] > 0.8


@pytest.mark.slow
def test_dry_run_changes_nothing(reg, capsys):
    before = _state(reg.client)
    out = promote(reg.cfg("study=good", "promote.dry_run=true", config="promote"))
    assert out["version"] is None and "dry run: nothing changed" in capsys.readouterr().out
    assert _state(reg.client) == before


@pytest.mark.slow
def test_a_worse_model_does_not_take_champion(reg, tmp_path, capsys):
    # Trained on shuffled labels: it cannot beat the champion on the same test file.
    frame = pd.read_csv(Path(str(reg.test_file).replace("test.csv", "train.csv")))
    frame["class"] = np.random.default_rng(0).permutation(frame["class"].to_numpy())
    noise = tmp_path / "noise.csv"
    frame.to_csv(noise, index=False)
    tune(reg.cfg("data=csv", f"data.train={noise}", f"data.test={reg.test_file}", "tracking.experiment=digits",
                 f"study_dir={tmp_path}/worse", "study=worse", *reg.train_opts, config="tune"))
    second = promote(reg.cfg("study=worse", config="promote"))
    assert second["alias"] == "challenger" and "<" in second["reason"]
    assert second["test_metrics"]["test_auc"] < reg.first["test_metrics"]["test_auc"]
    aliases = reg.client.get_registered_model("siamese-digits").aliases
    assert str(aliases["champion"]) == "1" and str(aliases["challenger"]) == second["version"]
    assert "challenger" in capsys.readouterr().out
    forced = promote(reg.cfg("study=worse", "promote.force=true", config="promote"))
    assert forced["alias"] == "champion" and forced["reason"].startswith("forced")
    assert str(reg.client.get_registered_model("siamese-digits").aliases["champion"]) == forced["version"]
    # Give the place back so the other tests score the good model.
    reg.client.set_registered_model_alias("siamese-digits", "champion", "1")


@pytest.mark.slow
def test_predict_streams_and_matches_in_process_scores(reg, tmp_path, capsys):
    out = tmp_path / "scored.csv"
    result = predict(reg.cfg(f"model_uri={MODEL}", f"input={reg.test_file}", f"output={out}", "chunk_size=70", config="predict"))
    assert result["chunks"] == 3 and result["rows"] == 200
    scored, source = pd.read_csv(out), pd.read_csv(reg.test_file)
    assert list(scored.columns) == [*source.columns, "score", "prediction"]
    pd.testing.assert_frame_equal(scored[source.columns], source, check_exact=False, rtol=1e-6)
    bundle = load_bundle(MODEL)
    pairs = bundle.pairs(source)
    s, pred = bundle.predict(pairs)
    # Chunks of 70 and one batch of 200 (or a server's batch) run different float32 kernels: scores agree
    # to a few ulp, not bit for bit.
    np.testing.assert_allclose(scored["score"], s, rtol=1e-5, atol=1e-5)
    assert (scored["prediction"].to_numpy() == pred).all()
    expected = bundle.evaluate(pairs, "input")
    for key in ("input_accuracy", "input_auc", "input_f1"):
        assert result["metrics"][key] == pytest.approx(expected[key], abs=1e-9)
    assert expected["input_accuracy"] == pytest.approx(reg.first["test_metrics"]["test_accuracy"], abs=1e-9)
    text = capsys.readouterr().out
    assert f"accuracy={expected['input_accuracy']:.4f}" in text


@pytest.mark.slow
def test_predict_without_labels_scores_only(reg, tmp_path):
    unlabelled = tmp_path / "pairs.csv"
    pd.read_csv(reg.test_file).drop(columns="class").head(50).to_csv(unlabelled, index=False)
    result = predict(reg.cfg(f"model_uri={MODEL}", f"input={unlabelled}", f"output={tmp_path}/o.csv", config="predict"))
    assert "metrics" not in result and len(pd.read_csv(tmp_path / "o.csv")) == 50


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    (lambda f: f.drop(columns="v127"), "columns differ from the model's (missing 'v127')"),
    (lambda f: f.assign(v3=f["v3"].where(f.index != 150, np.nan)), "column 'v3' line 152 is nan"),
    (lambda f: f.assign(v5=f["v5"].astype(object).where(f.index != 10, "x")), "column 'v5' line 12 is not numeric"),
    (lambda f: f.assign(**{"class": f["class"].where(f.index != 7, 2)}), "label column 'class' line 9 is 2"),
])
def test_predict_refuses_bad_input_and_leaves_no_output(reg, tmp_path, damage, message):
    bad, out = tmp_path / "bad.csv", tmp_path / "out.csv"
    damage(pd.read_csv(reg.test_file)).to_csv(bad, index=False)
    with pytest.raises(DataError, match=re.escape(message)):
        predict(reg.cfg(f"model_uri={MODEL}", f"input={bad}", f"output={out}", "chunk_size=100", config="predict"))
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.slow
def test_pyfunc_signature_and_input_checks(reg):
    model = mlflow.pyfunc.load_model(MODEL)
    names = [c.name for c in model.metadata.get_input_schema().inputs]
    assert names == [f"v{i}" for i in range(128)]
    assert [c.name for c in model.metadata.get_output_schema().inputs] == ["score", "prediction"]
    frame = pd.read_csv(reg.test_file).drop(columns="class").head(5)
    out = model.predict(frame)
    assert list(out.columns) == ["score", "prediction"] and len(out) == 5
    with pytest.raises(mlflow.exceptions.MlflowException, match="v64"):
        model.predict(frame.drop(columns="v64"))
    with pytest.raises(mlflow.exceptions.MlflowException, match="v2"):
        model.predict(frame.assign(v2="abc"))
    with pytest.raises(DataError, match="column 'v9'"):
        model.predict(frame.assign(v9=np.nan))


@pytest.mark.slow
def test_unknown_model_is_a_user_error(reg):
    with pytest.raises(UserError, match="siamese-nope"):
        load_bundle("models:/siamese-nope@champion")


@pytest.mark.slow
def test_export_runs_the_readme_snippet_without_siamese_or_mlflow(reg, tmp_path):
    out = export(reg.cfg(f"model_uri={MODEL}", f"out={tmp_path}/exported", config="export"))
    readme = (project_root() / "README.md").read_text()
    snippet = re.search(r"<!-- export-snippet -->\s*```python\n(.*?)```", readme, re.S).group(1)
    assert len(snippet.strip().splitlines()) == 5
    pairs = tmp_path / "pairs.csv"
    pd.read_csv(reg.test_file).drop(columns="class").head(40).to_csv(pairs, index=False)
    code = (snippet.replace('"DIR', f'"{out}').replace('"pairs.csv"', f'"{pairs}"')
            + "\nimport json as j; print(j.dumps({'score': score.tolist(), 'same': same.tolist(),"
              " 'mods': sorted(m for m in sys.modules if m.split('.')[0] in ('siamese', 'mlflow'))}))")
    s, pred = load_bundle(MODEL).predict(load_bundle(MODEL).pairs(pd.read_csv(pairs)))
    for keras_backend in ("tensorflow", "jax"):  # plain Keras on either backend
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": keras_backend})
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        assert got["mods"] == []
        np.testing.assert_allclose(got["score"], s, atol=1e-5)
        assert got["same"] == [bool(p) for p in pred]


@pytest.mark.slow
def test_cli_promote_dry_run_and_bad_predict_input(reg, tmp_path):
    overrides = [*tracking_overrides(reg.store), f"++data.cache_dir={reg.test_file.parent.parent}", *DATA]
    proc = run_cli("promote", *overrides, "study=good", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "dry run: nothing changed" in proc.stdout and "alias champion" in proc.stdout
    missing = tmp_path / "nope.csv"
    proc = run_cli("predict", *overrides, f"model={MODEL}", f"input={missing}")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"error: {missing}: file not found"]


def test_rewrite_argv():
    argv = ["p", "model=models:/m@a", "--dry-run", "report.by=loss,model.distance", "x.model=1"]
    assert rewrite_argv(argv, rename={"model": "model_uri"}, flags={"--dry-run": "promote.dry_run=true"},
                        lists=("report.by",)) == ["p", "model_uri=models:/m@a", "promote.dry_run=true",
                                                  "report.by=[loss,model.distance]", "x.model=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_answers_with_the_predict_scores(reg, tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{reg.store}/mlflow.db", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", MODEL,
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read()[-2000:]
            assert time.time() < deadline, "server did not answer /ping within 180 s"
            time.sleep(1)
        frame = pd.read_csv(reg.test_file).head(60)
        body = {"dataframe_split": frame.drop(columns="class").to_dict(orient="split", index=False)}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            served = pd.DataFrame(json.loads(r.read())["predictions"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    source = tmp_path / "pairs.csv"
    frame.to_csv(source, index=False)
    predict(reg.cfg(f"model_uri={MODEL}", f"input={source}", f"output={tmp_path}/scored.csv", config="predict"))
    scored = pd.read_csv(tmp_path / "scored.csv")
    np.testing.assert_allclose(served["score"], scored["score"], rtol=1e-5, atol=1e-5)
    assert (served["prediction"].to_numpy() == scored["prediction"].to_numpy()).all()
