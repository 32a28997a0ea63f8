"""MLflow: the store, runs with reproducibility tags, per-epoch curves, figures and artifacts."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

import keras
import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from siamese.errors import TrackingError
from siamese.figures import Figures
from siamese.paths import project_root

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)


def configure(cfg: Any) -> str:
    """Point MLflow at ``tracking.uri`` and check it answers, before any training starts.

    Raises:
        TrackingError: the store cannot be reached or created.
    """
    uri = str(cfg.uri)
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=float(cfg.timeout_s)) as resp:
                if resp.status != 200:
                    raise TrackingError(f"tracking server {uri} answered HTTP {resp.status} on /health")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(f"tracking server {uri} is unreachable: {reason}") from None
    elif uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"cannot create the tracking store folder {db.parent}: {exc}") from None
    mlflow.set_tracking_uri(uri)
    return uri


def experiment_id(name: str, artifact_root: str | None) -> str:
    """Get or create an experiment; a local store keeps artifacts under ``artifact_root``."""
    client = MlflowClient()
    try:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        # A tracking server decides where artifacts go; a local store keeps them beside the db.
        local = not mlflow.get_tracking_uri().startswith(("http://", "https://"))
        location = Path(artifact_root).resolve().as_uri() if artifact_root and local else None
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"tracking store {mlflow.get_tracking_uri()}: {exc.message.splitlines()[0]}") from None


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config flattened to ``a.b.c`` keys (MLflow params are strings)."""
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out[prefix] = json.dumps(node) if isinstance(node, list) else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return {k: v[:6000] for k, v in out.items()}


def git_commit() -> tuple[str, bool]:
    """The project's commit and whether the work tree has uncommitted changes."""
    root = project_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def reproducibility_tags(seed: int, hashes: dict[str, str], files: dict[str, Path]) -> dict[str, str]:
    """Tags that let a run be reproduced: commit, seed, data hashes, package versions."""
    import tensorflow as tf

    commit, dirty = git_commit()
    tags = {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "seed": str(seed),
        "python_version": platform.python_version(),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "mlflow_version": mlflow.__version__,
    }
    for split, digest in hashes.items():
        tags[f"data_{split}_sha256"] = digest
        tags[f"data_{split}_file"] = str(files[split])
    return tags


def space_hash(obj: Any) -> str:
    """A short stable hash of a JSON-able object (e.g. a search space)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextmanager
def run(experiment: str, artifact_root: str | None, run_name: str | None = None, nested: bool = False,
        run_id: str | None = None, tags: dict[str, str] | None = None,
        figures: Figures | None = None) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that ends FINISHED only if the block completes; else FAILED with the reason.

    A run whose figures ``figures`` draws in the background is left RUNNING and handed over: the
    figure worker ends it once they are logged (see :mod:`siamese.figures`).
    """
    exp_id = experiment_id(experiment, artifact_root)
    active = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else exp_id, run_name=run_name, nested=nested, tags=tags)
    this = active.info.run_id
    try:
        yield active
    except BaseException as exc:
        if figures is not None:
            figures.drop(this)
        reason = f"{type(exc).__name__}: {exc}".strip()[:5000]
        try:
            mlflow.set_tag("failure_reason", reason)
        finally:
            mlflow.end_run("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    if figures is not None and figures.takes_over(this):
        mlflow.end_run("RUNNING")  # leaves the fluent run stack; the status stays RUNNING
        figures.hand_over(this)
    else:
        mlflow.end_run("FINISHED")


def log_figure(fig: Any, name: str) -> None:
    """Log a matplotlib figure as a PNG artifact."""
    mlflow.log_figure(fig, name)


def log_config(cfg: DictConfig) -> None:
    """The resolved config as params and as ``config.yaml``."""
    mlflow.log_params(flat_params(cfg))
    mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")


def log_dir(folder: Path, artifact_path: str) -> None:
    """Log a folder's files under ``artifact_path``."""
    mlflow.log_artifacts(str(folder), artifact_path)


class EpochLogger(keras.callbacks.Callback):
    """Every epoch's metrics to the active MLflow run with ``step`` = epoch (from 0).

    Buffered and written in one batch every ``every_s`` seconds and at the end: one store write per
    epoch cost 0.2 s of a 25-epoch trial. ``flush`` is also called when training fails, so a
    FAILED run keeps its curves up to the failure.
    """

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self.every_s, self.pending, self.last = every_s, [], time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        now = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now, epoch) for k, v in (logs or {}).items()]
        if time.monotonic() - self.last >= self.every_s:
            self.flush()

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        self.flush()

    def flush(self) -> None:
        """Write what is buffered to the active run."""
        if self.pending and mlflow.active_run():
            MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=self.pending)
        self.pending, self.last = [], time.monotonic()


def scratch_dir() -> tempfile.TemporaryDirectory:
    """A temporary folder for artifacts before they are logged."""
    return tempfile.TemporaryDirectory(prefix="siamese-")


def find_study(cfg: DictConfig) -> mlflow.entities.Run:
    """The study's parent run (the latest one when ``study`` is not given)."""
    configure(cfg.tracking)
    exp = mlflow.get_experiment_by_name(str(cfg.tracking.experiment))
    if exp is None:
        raise TrackingError(f"no experiment '{cfg.tracking.experiment}' in {cfg.tracking.uri}; run a study first (make tune)")
    query = "tags.kind = 'study'" + (f" and tags.study = '{cfg.study}'" if cfg.study else "")
    runs = mlflow.search_runs([exp.experiment_id], filter_string=query, order_by=["start_time DESC"], output_format="list")
    if not runs:
        raise TrackingError(f"no study{f' named {cfg.study!r}' if cfg.study else ''} in experiment '{exp.name}'")
    return runs[0]


def children(parent_id: str) -> pd.DataFrame:
    """The study's trial and baseline runs as a frame (params, metrics, tags)."""
    return mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", search_all_experiments=True)
