"""What the MLflow UI shows of a run: its name, its URL, the experiment's kind (fast, real store)."""

from __future__ import annotations

import subprocess
import sys

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from siamese import runmeta
from siamese.paths import project_root
from siamese.tracking import EXPERIMENT_KIND, Tracker


def test_train_names_come_from_overrides_or_the_data_set():
    cfg = OmegaConf.create({"run_name": None, "data": {"name": "digits"}})
    assert runmeta.train_name(cfg, "3f9a1c77", []) == "digits-3f9a1c"
    overrides = ["model.distance=l2", "loss=contrastive", "data.train=/x/pairs.csv", "tracking.uri=sqlite:///a.db",
                 "++data.cache_dir=/tmp/c"]
    assert runmeta.train_name(cfg, "3f9a1c77", overrides) == "dist=l2 loss=contrastive train=pairs.csv-3f9a1c"
    assert runmeta.train_name(OmegaConf.merge(cfg, {"run_name": "mine"}), "3f9a1c77", overrides) == "mine"


def test_experiments_are_model_training_and_make_ui_prints_their_runs_tables(store):
    uri = f"sqlite:///{store}/mlflow.db"
    tracker = Tracker(OmegaConf.create({"uri": uri, "experiment": "digits", "artifact_root": str(store / "artifacts"),
                                        "timeout_s": 5}))
    exp_id = tracker.experiment_id()
    client = MlflowClient(uri)
    assert client.get_experiment(exp_id).tags[EXPERIMENT_KIND[0]] == "custom_model_development"
    old = client.create_experiment("older")  # made before the tag existed: tagged when next used
    assert EXPERIMENT_KIND[0] not in client.get_experiment(old).tags
    Tracker(OmegaConf.create({"uri": uri, "experiment": "older", "timeout_s": 5})).experiment_id()
    assert client.get_experiment(old).tags[EXPERIMENT_KIND[0]] == "custom_model_development"
    run = client.create_run(exp_id)
    url = runmeta.ui_url(OmegaConf.create({"uri": uri, "ui_url": "http://127.0.0.1:5000"}), run)
    assert url == f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs/{run.info.run_id}?workflowType=machine_learning"
    shown = subprocess.run([sys.executable, "-m", "siamese.runmeta", uri, "http://127.0.0.1:5000"], cwd=project_root(),
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f"digits: http://127.0.0.1:5000/#/experiments/{exp_id}?workflowType=machine_learning" in shown.stdout.splitlines()
