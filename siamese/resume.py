"""A study's lasting state between runs of the same command: one process at a time, what the study
was run with (checked when it resumes), and what a dead process left behind in MLflow.

``<study_dir>/study.json`` holds the parent run, the space hash, the data hashes and the fixed
settings; ``<study_dir>/study.lock`` is held while a process runs the study.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from siamese import tracking
from siamese.data import Dataset
from siamese.errors import ConfigError

if TYPE_CHECKING:  # siamese.study imports keras-tuner and TensorFlow; this module needs neither
    from siamese.study import StudySettings

STATE_FILE, LOCK_FILE = "study.json", "study.lock"
RESUME_MODES = ("auto", "force")
# Keys that say where things are or how fast they run, not what a trial is.
# data.implied_pairs only feeds training.implied_pairs (compared, or searched): comparing it too would
# refuse a study made before the key existed, or one whose space searches the training key.
NOT_FIXED = {"data": {"train", "test", "cache_dir", "root_dir", "missing_hint", "implied_pairs"},
             "training": {"verbose", "feed", "jit_compile", "steps_per_execution"},
             "tuner": {"max_trials", "verbose", "max_consecutive_failures"}}
FIXED_GROUPS = ("data", "model", "loss", "optimizer", "training", "tuner")


@contextmanager
def study_lock(folder: Path, name: str) -> Iterator[None]:
    """Hold the study's lock: a second process on the same study stops at once.

    Holding it also means any run of the study still RUNNING in MLflow belongs to a dead process.

    Raises:
        ConfigError: another process is running this study.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"study '{name}' is being run by another process ({folder / LOCK_FILE} is locked); "
                              "wait for it to end, or pick another study=") from None
        yield  # the lock goes with the file: on close, or when the process dies


def fixed_settings(cfg: DictConfig, searched: set[str]) -> dict[str, str]:
    """The settings that decide what a trial means, flattened (``training.epochs`` …), without the
    searched keys and those in :data:`NOT_FIXED`."""
    node = {g: OmegaConf.to_container(cfg[g], resolve=True) for g in FIXED_GROUPS}
    node["seed"] = cfg.seed
    node["search"] = {"objective": cfg.search.objective, "direction": cfg.search.direction}
    flat = tracking.flat_params(OmegaConf.create(node))
    return {k: v for k, v in flat.items()
            if k not in searched and k.split(".", 1)[-1] not in NOT_FIXED.get(k.split(".", 1)[0], ())
            and k != "tuner.oracle.max_trials" and not k.startswith(("tuner.workers", "tuner.distributed."))}


def same_value(old: Any, new: Any) -> bool:
    """Two recorded settings (text) are the same value: equal, or equal numbers (``0`` and ``0.0``,
    ``1e-3`` and ``0.001`` name one value; the command line may write either)."""
    if old == new:
        return True
    try:
        return old is not None and new is not None and float(old) == float(new)
    except (TypeError, ValueError):
        return False


def changes(state: dict[str, Any], space_hash: str, hashes: dict[str, str], fixed: dict[str, str]) -> list[str]:
    """What differs between the study's recorded state and this run, one phrase each."""
    out = []
    if state.get("space_hash") != space_hash:
        out.append(f"the search space (hash {state.get('space_hash')} → {space_hash})")
    for split, digest in hashes.items():
        old = state.get("data_sha256", {}).get(split)
        if old and old != digest:
            out.append(f"the {split} data file (sha256 {old[:12]}… → {digest[:12]}…)")
    old_fixed = state.get("fixed")
    if old_fixed is not None:
        for key in sorted(set(old_fixed) | set(fixed)):
            if not same_value(old_fixed.get(key), fixed.get(key)):
                out.append(f"{key}={old_fixed.get(key, '(unset)')} → {fixed.get(key, '(unset)')}")
    return out


def _write_state(path: Path, state: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(state, indent=1))
    os.replace(partial, path)


def open_parent(cfg: DictConfig, settings: "StudySettings", tracker: tracking.Tracker, space_hash: str, data: Dataset,
                searched: set[str]) -> tuple[str, bool]:
    """Reuse the study's MLflow parent run if this study ran before in this store, else create it.

    A resumed study must have the same search space, data files and fixed settings, unless
    ``resume=force``.

    Returns:
        The parent run id and whether it was reopened (a resumed study).

    Raises:
        ConfigError: the study exists with other settings (named), or ``resume`` is not auto|force.
    """
    mode = str(cfg.get("resume", "auto"))
    if mode not in RESUME_MODES:
        raise ConfigError(f"resume={mode!r} is not one of {list(RESUME_MODES)}")
    state_path = settings.dir / STATE_FILE
    fixed = fixed_settings(cfg, searched)
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    if state is not None:
        try:
            parent = mlflow.get_run(state["parent_run_id"])
        except mlflow.exceptions.MlflowException:
            parent = None  # a fresh store: start a new parent
        if parent is not None:
            state.setdefault("data_sha256", {k[5:-7]: v for k, v in parent.data.tags.items()
                                             if k.startswith("data_") and k.endswith("_sha256")})
            changed = changes(state, space_hash, data.hashes, fixed)
            named = "; ".join(changed[:6]) + (f"; and {len(changed) - 6} more" if len(changed) > 6 else "")
            if changed and mode != "force":
                raise ConfigError(f"study '{settings.name}' was run with other settings; changed: {named}. "
                                  f"Run it with resume=force to continue anyway, or pick another study= "
                                  f"(or delete {settings.dir})")
            if changed:
                print(f"warning: resume=force: continuing study '{settings.name}' despite: {named}", flush=True)
                MlflowClient().set_tag(parent.info.run_id, "resume_forced", "; ".join(changed)[:5000])
            _write_state(state_path, {**state, "space_hash": space_hash, "data_sha256": data.hashes, "fixed": fixed})
            return parent.info.run_id, True
    tags = {**tracking.reproducibility_tags(settings.seed, data.hashes, data.files), "kind": "study",
            "study": settings.name, "tuner": settings.tuner, "objective": settings.objective,
            "direction": settings.direction, "space_hash": space_hash}
    run_id = tracker.create_run(settings.name, tags)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    _write_state(state_path, {"parent_run_id": run_id, "space_hash": space_hash, "data_sha256": data.hashes,
                              "fixed": fixed, "tracking_uri": mlflow.get_tracking_uri()})
    return run_id, False


def reconcile(parent_id: str) -> list[str]:
    """End what a dead process left RUNNING under the study's parent (trials, their executions,
    baselines) as KILLED with a reason, and clear the parent's stale ``failure_reason``.

    Only call it holding :func:`study_lock`: then no live process owns those runs.

    Returns:
        The run ids ended KILLED.
    """
    client = MlflowClient()
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    reason = (f"the process running this study ended before this run did (killed or crashed); found RUNNING "
              f"when the study resumed at {when}; a trial is run again")
    killed = []
    queue = [parent_id]
    while queue:
        frame = tracking.children(queue.pop())
        if frame.empty:
            continue
        for run_id, status, kind in zip(frame["run_id"], frame["status"], frame.get("tags.kind", [None] * len(frame))):
            if kind == "trial":  # its executions' runs, if the trial had several
                queue.append(run_id)
            if status == "RUNNING":
                client.set_tag(run_id, "failure_reason", reason)
                client.set_terminated(run_id, "KILLED")
                killed.append(run_id)
    if "failure_reason" in client.get_run(parent_id).data.tags:
        client.delete_tag(parent_id, "failure_reason")
    return killed


def adopt_finished(oracle: Any, parent_id: str, objective: str) -> list[str]:
    """Trials keras-tuner would run again although their MLflow run had FINISHED: the process died
    between the run's end and the oracle's save (a SIGKILL, or a chief killed while a worker
    reported). Each is recorded COMPLETED in the oracle with its run's ``objective`` instead of
    running twice.

    Returns:
        The adopted trial ids.
    """
    queued = list(dict.fromkeys(oracle._retry_queue))  # reload() puts interrupted trials there
    frame = tracking.children(parent_id) if queued else None
    if frame is None or frame.empty or "tags.trial_id" not in frame or f"metrics.{objective}" not in frame:
        return []
    done = frame[(frame["tags.kind"] == "trial") & (frame["status"] == "FINISHED") & frame[f"metrics.{objective}"].notna()]
    adopted = []
    quiet, oracle._display.verbose = oracle._display.verbose, 0  # keras-tuner's own trial summary
    try:
        for trial_id in queued:
            rows = done[done["tags.trial_id"] == trial_id]
            if rows.empty or trial_id not in oracle.trials:
                continue
            oracle._retry_queue = [t for t in oracle._retry_queue if t != trial_id]
            oracle.update_trial(trial_id, {objective: float(rows[f"metrics.{objective}"].iloc[0])})
            trial = oracle.trials[trial_id]
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
            adopted.append(trial_id)
    finally:
        oracle._display.verbose = quiet
    return adopted
