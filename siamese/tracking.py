"""MLflow: the store, runs with reproducibility tags, configs, artifacts and study lookups.

One :class:`Tracker` is bound to a ``tracking`` config (store URI, experiment, artifact root) and
every run, lookup and experiment of a task goes through it. Nothing here imports TensorFlow: the
figure worker and ``siamese.report`` use this module without it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import platform
import subprocess
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Protocol

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from siamese.backend import running
from siamese.errors import TrackingError
from siamese.paths import artifact_root_for, project_root

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)

# MLflow 3's UI opens an experiment by this tag: without it, it guesses and may show the GenAI
# view (traces, tokens) instead of the runs table. Values are in the UI's bundle (ExperimentKind).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


class RunOwner(Protocol):
    """Someone with work left for a run after its block has completed (e.g. its figures).

    The run is complete when its block is: :meth:`Tracker.run` ends it FINISHED, then, if
    ``takes_over(run_id)``, calls ``hand_over(run_id)``; the owner's work follows (and tags the
    run while it is missing, see :mod:`siamese.figures`). A failed block calls ``drop(run_id)`` and
    the run ends FAILED or KILLED.
    """

    def takes_over(self, run_id: str) -> bool: ...

    def hand_over(self, run_id: str) -> None: ...

    def drop(self, run_id: str) -> None: ...


def configure(cfg: Any) -> str:
    """Point MLflow at ``tracking.uri`` and check it answers, before any training starts.

    A SQLite store is created (or its schema migrated) here, once, under a lock on ``<db>.lock``:
    jobs started together on a new store would otherwise race in MLflow's schema migration.

    Raises:
        TrackingError: the store cannot be reached, created or opened.
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
        _check_sqlite(db, uri)
        _open_sqlite(uri, db)
    mlflow.set_tracking_uri(uri)
    return uri


def _check_sqlite(db: Path, uri: str) -> None:
    """A SQLite store must open and take writes, else one line now (SQLAlchemy's tracebacks later).

    An existing file is opened and a write transaction begun and rolled back; for a new one, the
    folder must take a file (MLflow creates the database there).

    Raises:
        TrackingError: naming the store, the cause and the fix.
    """
    import sqlite3

    fix = "set tracking.uri=sqlite:///<a writable folder>/mlflow.db"
    if not db.exists():
        try:
            tempfile.NamedTemporaryFile(dir=db.parent, prefix=".siamese-probe-").close()
        except OSError as exc:
            raise TrackingError(f"tracking store {uri}: cannot create {db.name} in {db.parent} "
                                f"({exc.strerror or exc}); {fix}") from None
        return
    try:
        con = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("PRAGMA schema_version")
            con.rollback()
        finally:
            con.close()
    except sqlite3.Error as exc:
        if "locked" in str(exc):  # another job is writing: the store is fine
            return
        raise TrackingError(f"tracking store {uri}: {db} cannot be opened for writing as a SQLite database "
                            f"({exc}); {fix}") from None


def _open_sqlite(uri: str, db: Path) -> None:
    """Create or migrate the SQLite store under an exclusive lock, so it happens once."""
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with open(db.with_name(db.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
            # Opening the store creates or checks its schema; the engine is then cached per URI.
            MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # OSError, MlflowException, SQLAlchemy's errors: all one line for the user
        first = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip().splitlines()[0]
        raise TrackingError(f"tracking store {uri} cannot be opened: {first[:300]}") from None


class Tracker:
    """A task's MLflow side, bound once to its ``tracking`` config.

    Args:
        cfg: the ``tracking`` node: ``uri``, ``experiment``, ``artifact_root``, ``timeout_s``.
        check: configure and check the store now (see :func:`configure`).
    """

    def __init__(self, cfg: Any, check: bool = True) -> None:
        self.cfg = cfg
        self.experiment = str(cfg.experiment)
        self.artifact_root = cfg.get("artifact_root") or artifact_root_for(str(cfg.uri))
        # A study's worker process (siamese.worker) has no parent run open: its trials name it, and
        # carry child_tags (which worker ran them).
        self.parent_run_id: str | None = None
        self.child_tags: dict[str, str] = {}
        if check:
            configure(cfg)

    def experiment_id(self) -> str:
        """Get or create the experiment; a local store keeps artifacts under ``artifact_root``.

        Raises:
            TrackingError: the store refuses.
        """
        client = MlflowClient()
        try:
            exp = client.get_experiment_by_name(self.experiment)
            if exp is not None:
                if exp.lifecycle_stage == "deleted":
                    client.restore_experiment(exp.experiment_id)
                if EXPERIMENT_KIND[0] not in exp.tags:  # an experiment made before the tag was set
                    client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
                return exp.experiment_id
            # A tracking server decides where artifacts go; a local store keeps them beside the db.
            local = not mlflow.get_tracking_uri().startswith(("http://", "https://"))
            root = self.artifact_root
            location = Path(root).resolve().as_uri() if root and local else None
            try:
                return client.create_experiment(self.experiment, artifact_location=location,
                                                tags=dict([EXPERIMENT_KIND]))
            except mlflow.exceptions.MlflowException:
                exp = client.get_experiment_by_name(self.experiment)  # another job created it just now
                if exp is None:
                    raise
                return exp.experiment_id
        except mlflow.exceptions.MlflowException as exc:
            raise TrackingError(f"tracking store {mlflow.get_tracking_uri()}: {exc.message.splitlines()[0]}") from None

    @contextmanager
    def run(self, run_name: str | None = None, nested: bool = False, run_id: str | None = None,
            tags: dict[str, str] | None = None, owner: RunOwner | None = None) -> Iterator[mlflow.ActiveRun]:
        """An MLflow run that ends FINISHED only if the block completes; else FAILED (KILLED on a
        stop) with a ``failure_reason`` tag. ``owner`` takes over the work left once it has ended
        (see :class:`RunOwner`).
        """
        exp_id = None if run_id else self.experiment_id()
        parent = self.parent_run_id if nested and run_id is None and mlflow.active_run() is None else None
        tags = {**(tags or {}), **self.child_tags} if parent else tags
        active = mlflow.start_run(run_id=run_id, experiment_id=exp_id, run_name=run_name, nested=nested,
                                  parent_run_id=parent, tags=tags)
        this = active.info.run_id
        try:
            yield active
        except BaseException as exc:
            if owner is not None:
                owner.drop(this)
            stop = isinstance(exc, KeyboardInterrupt)
            reason = (str(exc) or "stopped by Ctrl-C (KeyboardInterrupt)") if stop else f"{type(exc).__name__}: {exc}"
            reason = reason.strip()[:5000]
            try:
                mlflow.set_tag("failure_reason", reason)
            finally:
                mlflow.end_run("KILLED" if stop else "FAILED")
            raise
        mlflow.end_run("FINISHED")  # complete: nothing that happens after this may undo it
        if owner is not None and owner.takes_over(this):
            owner.hand_over(this)

    def create_run(self, run_name: str, tags: dict[str, str]) -> str:
        """A run created without entering it (a study's parent, reopened with ``run(run_id=…)``)."""
        return MlflowClient().create_run(self.experiment_id(), run_name=run_name, tags=tags).info.run_id

    def find_study(self, study: str | None) -> mlflow.entities.Run:
        """The study's parent run (the latest one when ``study`` is not given).

        Raises:
            TrackingError: no such experiment or study.
        """
        exp = mlflow.get_experiment_by_name(self.experiment)
        if exp is None:
            raise TrackingError(f"no experiment '{self.experiment}' in {self.cfg.uri}; run a study first (make tune)")
        query = "tags.kind = 'study'" + (f" and tags.study = '{study}'" if study else "")
        runs = mlflow.search_runs([exp.experiment_id], filter_string=query, order_by=["start_time DESC"],
                                  output_format="list")
        if not runs:
            raise TrackingError(f"no study{f' named {study!r}' if study else ''} in experiment '{exp.name}'")
        return runs[0]


def children(parent_id: str) -> pd.DataFrame:
    """A parent run's child runs (a study's trials and baselines) as a frame (params, metrics, tags)."""
    return mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", search_all_experiments=True)


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
    """Tags that let a run be reproduced: commit, seed, data hashes, package versions.

    Versions come from package metadata, so this needs no TensorFlow import; the Keras backend
    is the one the running process chose (``KERAS_BACKEND``, default tensorflow).
    """
    commit, dirty = git_commit()
    tags = {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "seed": str(seed),
        "python_version": platform.python_version(),
        "tensorflow_version": metadata.version("tensorflow"),
        "keras_version": metadata.version("keras"),
        "keras_backend": running(),
        "mlflow_version": mlflow.__version__,
    }
    for split, digest in hashes.items():
        tags[f"data_{split}_sha256"] = digest
        tags[f"data_{split}_file"] = str(files[split])
    return tags


def space_hash(obj: Any) -> str:
    """A short stable hash of a JSON-able object (e.g. a search space)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def log_figure(fig: Any, name: str) -> None:
    """Log a matplotlib figure as a PNG artifact of the active run."""
    mlflow.log_figure(fig, name)


def log_config(cfg: DictConfig) -> None:
    """The resolved config as params and as ``config.yaml`` of the active run."""
    mlflow.log_params(flat_params(cfg))
    mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")


def log_dir(folder: Path, artifact_path: str) -> None:
    """Log a folder's files under ``artifact_path`` of the active run."""
    mlflow.log_artifacts(str(folder), artifact_path)


def scratch_dir() -> tempfile.TemporaryDirectory:
    """A temporary folder for artifacts before they are logged."""
    return tempfile.TemporaryDirectory(prefix="siamese-")
