"""Keras' backend as a config choice: TensorFlow (this process) and JAX (in subprocesses, since a
process runs one backend), with models moving between them unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import random_pairs, run_cli, tracking_overrides
from siamese import backend
from siamese.bundle import ModelBundle
from siamese.data import PairSet, Preprocessor
from siamese.errors import ConfigError
from siamese.model import build_model, output_kind
from siamese.registry import load_bundle

HEADS = [("l1", "bce", "linear"), ("cosine", "contrastive", "linear"), ("learned", "bce", "sigmoid"),
         ("l2", "online_contrastive", "linear")]


def test_unknown_backend_and_a_second_backend_in_one_process_are_config_errors():
    with pytest.raises(ConfigError, match="backend='torch' is not one of"):
        backend.start("torch")
    assert backend.start("tensorflow") == "tensorflow"  # this test process runs Keras on TensorFlow
    with pytest.raises(ConfigError, match="already runs on tensorflow"):
        backend.start("jax")


def _score_in(backend_name: str, folders: list[Path], pairs: Path) -> list[list[float]]:
    """Each saved bundle's scores on ``pairs``, computed in a fresh process on ``backend_name``."""
    code = ("import json, sys, numpy as np; from siamese import backend; backend.start(sys.argv[1]);"
            "from siamese.bundle import ModelBundle; from siamese.data import PairSet;"
            "a = np.load(sys.argv[2]); p = PairSet(a['left'], a['right']);"
            "import keras; assert keras.backend.backend() == sys.argv[1];"
            "print(json.dumps([ModelBundle.load(f).score(p).tolist() for f in sys.argv[3:]]))")
    proc = subprocess.run([sys.executable, "-c", code, backend_name, str(pairs), *map(str, folders)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_model_saved_on_tensorflow_scores_identically_on_jax(tmp_path):
    left, right, _ = random_pairs(64, 10, seed=3)
    np.savez(tmp_path / "pairs.npz", left=left, right=right)
    folders, expected = [], []
    for i, (distance, loss, act) in enumerate(HEADS):
        cfg = OmegaConf.create({"distance": distance, "output_activation": act, "activation": "relu", "dropout": 0.1,
                                "depth": 2, "width": 16, "batch_norm": True, "embedding_dim": 8, "residual": False,
                                "normalize_embedding": False, "head_width": 8})
        kind = output_kind(cfg, loss)
        pre = Preprocessor.fit("standardize", PairSet(left, right))
        bundle = ModelBundle(build_model(10, cfg, kind), pre, kind, 0.0, 0.0, {})
        folders.append(bundle.save(tmp_path / f"m{i}"))
        expected.append(bundle.score(PairSet(left, right)))
    got = _score_in("jax", folders, tmp_path / "pairs.npz")
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_jax_study_promotes_and_predicts_and_its_model_scores_identically_on_tensorflow(tmp_path, digits_files):
    store = tmp_path / "mlruns"
    common = [*tracking_overrides(store), f"++data.cache_dir={digits_files[0].parent.parent}",
              "++data.n_train=600", "++data.n_test=200", "backend=jax"]
    # No baselines: a 3-epoch model need not beat a tuned logistic regression to be promoted here.
    proc = run_cli("tune", *common, "study=jx", f"study_dir={tmp_path}/jx", "tuner.max_trials=2", "training.epochs=3",
                   f"compilation_cache={tmp_path}/jax-cache",
                   "baselines=false", "confirm.top_k=0", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    trials = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    assert {r.data.tags["keras_backend"] for r in runs if r.data.tags.get("kind") == "study"} == {"jax"}
    proc = run_cli("promote", *common, "study=jx")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "scored.csv"
    proc = run_cli("predict", *common, "model=models:/siamese-digits@champion", f"output={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    scored = pd.read_csv(out)
    # The same registered model, loaded here on TensorFlow, gives the JAX process's scores.
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    bundle = load_bundle("models:/siamese-digits@champion")
    s, pred = bundle.predict(bundle.pairs(pd.read_csv(digits_files[1])))
    np.testing.assert_allclose(scored["score"], s, rtol=1e-5, atol=1e-5)
    assert (scored["prediction"] == pred).mean() > 0.99  # a score at the threshold may round either way


# Runs siamese.train as the CLI does, counting JAX's persistent-cache hits (jax.monitoring events).
_COUNT_CACHE_HITS = """
import json, runpy, sys
import jax.monitoring
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None)
sys.argv = ["siamese.train", *sys.argv[1:]]
try:
    runpy.run_module("siamese.train", run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps({"hits": len(hits)}))
"""


@pytest.mark.slow
def test_jax_keeps_compiled_steps_on_disk_and_a_second_run_of_the_same_shapes_compiles_none(tmp_path, digits_files):
    cache = tmp_path / "jax-cache"
    common = [*tracking_overrides(tmp_path / "mlruns"), f"++data.cache_dir={digits_files[0].parent.parent}",
              "++data.n_train=600", "++data.n_test=200", "backend=jax", "training.epochs=2"]

    def train(*extra: str, env: dict[str, str] | None = None) -> int:
        proc = subprocess.run([sys.executable, "-c", _COUNT_CACHE_HITS, *common, *extra], capture_output=True, text=True,
                              timeout=600, cwd="/tmp", env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])["hits"]

    assert train(f"compilation_cache={cache}", "seed=1") == 0  # an empty cache: everything compiled
    steps = sorted(p.name for p in cache.glob("jit_train_step-*"))
    assert steps, sorted(p.name for p in cache.iterdir())
    # Another seed, the same shapes: the training steps come from the cache, and nothing new is written.
    assert train(f"compilation_cache={cache}", "seed=2") >= len(steps)
    assert sorted(p.name for p in cache.glob("jit_train_step-*")) == steps
    # null is off, even where JAX's own variable names the same folder.
    assert train("compilation_cache=null", "seed=2", env={"JAX_COMPILATION_CACHE_DIR": str(cache)}) == 0


@pytest.mark.parametrize("value, message", [
    ("{file}/jax", "compilation_cache={file}/jax: cannot write to the folder (Not a directory); give a writable "
                   "folder, or compilation_cache=null to turn the cache off"),
    ("{file}", "compilation_cache={file}: cannot write to the folder (File exists); give a writable "
               "folder, or compilation_cache=null to turn the cache off"),
    ("true", "compilation_cache=true: give a folder path (e.g. .cache/jax), or compilation_cache=null to turn the cache off"),
    ("5", "compilation_cache=5: give a folder path (e.g. .cache/jax), or compilation_cache=null to turn the cache off"),
    ("''", "compilation_cache='': give a folder path (e.g. .cache/jax), or compilation_cache=null to turn the cache off"),
])
def test_a_compilation_cache_that_is_not_a_writable_folder_is_a_one_line_error(tmp_path, value, message):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run_cli("train", *tracking_overrides(tmp_path / "mlruns"), "backend=jax",
                   f"compilation_cache={value.format(file=blocker)}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [f"error: {message.format(file=blocker)}"]
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # refused before the store is opened
