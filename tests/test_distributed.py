"""Parallel trials on keras-tuner's chief/worker engine, as real processes: a study with two local
workers (one parent, every trial once), a stop by SIGTERM (every child gone, open runs KILLED, the
same command resumes), a worker killed by SIGKILL mid-trial (its trial FAILED in keras-tuner and in
MLflow, the study completes with the other worker), and bad settings refused in one line."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from conftest import compose_cfg, run_cli, study_runs, tracking_overrides
from siamese.distributed import Distributed
from siamese.errors import ConfigError
from test_durability import WAIT_S, start_tune, wait_for

MAX_TRIALS = 4


def args_for(store: Path, cache: Path, trials: int = MAX_TRIALS, epochs: int = 3, *extra: str) -> list[str]:
    """A tiny study (600 digits pairs) run by two local workers; Keras prints epochs (``tuner.verbose``)."""
    return [*tracking_overrides(store), f"study_dir={store}/study", "study=d", f"data.cache_dir={cache}",
            "data.n_train=600", "data.n_test=200", f"training.epochs={epochs}", "training.early_stopping.patience=null",
            f"tuner.max_trials={trials}", "tuner.workers=2", "confirm.top_k=0", *extra]


def processes_of(folder: Path) -> list[int]:
    """Live processes whose command line names ``folder`` (the study's workers carry its config path)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = next((ln for ln in (entry / "status").read_text().splitlines() if ln.startswith("State:")), "")
            except OSError:
                continue
            if str(folder) in cmd and "Z" not in state.split()[1:2]:
                pids.append(int(entry.name))
    return pids


def worker_pid(study_dir: Path, tuner_id: str) -> int:
    (pid,) = [p for p in processes_of(study_dir / "workers") if f" {tuner_id} " in
              (Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode())]
    return pid


def progress(out: Path) -> list[str]:
    """The trial ids of the launcher's progress lines, in order."""
    return re.findall(rf"^\[\d+/{MAX_TRIALS}\] trial (\d+) \(worker\d\)", out.read_text(), re.M)


def kt_status(study_dir: Path) -> dict[str, str]:
    """keras-tuner's own record of each trial (the chief's project)."""
    return {p.parent.name.split("_")[1]: json.loads(p.read_text())["status"]
            for p in (study_dir / "tuner").glob("trial_*/trial.json")}


def test_bad_distributed_settings_are_refused_in_one_line(store, digits_cache):
    for override, key in [("tuner.workers=-1", "tuner.workers"), ("tuner.distributed.role=boss", "tuner.distributed.role"),
                          ("tuner.distributed.role=worker", "tuner.distributed.address"),
                          ("tuner.distributed.address=nohost", "tuner.distributed.address"),
                          ("tuner.distributed.tuner_id=mychief", "tuner.distributed.tuner_id"),
                          ("tuner.distributed.grace_s=abc", "tuner.distributed.grace_s"),
                          ("tuner.distributed.grace_s=-1", "tuner.distributed.grace_s"),
                          ("tuner.distributed.threads=0", "tuner.distributed.threads")]:
        cfg = compose_cfg(store, digits_cache, override, config="tune")
        with pytest.raises(ConfigError, match=re.escape(key)):
            Distributed.of(cfg)
    proc = run_cli("tune", *tracking_overrides(store), "tuner.workers=-1")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: tuner.workers must be a whole number >= 0 (0: trials in this process), got -1"]
    # A worker with no running study to join: one line, before any trial.
    proc = run_cli("tune", *tracking_overrides(store), f"data.cache_dir={digits_cache}", "study=nobody",
                   "tuner.distributed.role=worker", "tuner.distributed.address=127.0.0.1:1")
    assert proc.returncode == 2, proc.stderr
    assert re.fullmatch(r"error: no (study named 'nobody'|experiment 'digits') .*", proc.stderr.strip().splitlines()[-1]), proc.stderr


def test_threads_per_worker_share_the_cores(store, digits_cache):
    cores = len(os.sched_getaffinity(0))
    cfg = compose_cfg(store, digits_cache, "tuner.workers=2", config="tune")
    assert Distributed.of(cfg).threads == max(1, cores // 2)
    cfg = compose_cfg(store, digits_cache, "tuner.workers=3", "tuner.distributed.threads=2", config="tune")
    assert Distributed.of(cfg).threads == 2


@pytest.mark.slow
def test_two_local_workers_run_every_trial_once_under_one_parent(store, digits_cache, tmp_path):
    args = args_for(store, digits_cache)
    proc, out, err = start_tune(args, tmp_path / "run")
    assert proc.wait(timeout=WAIT_S * 2) == 0, err.read_text()[-3000:] + out.read_text()[-3000:]
    assert sorted(progress(out)) == [str(i) for i in range(MAX_TRIALS)]  # one line per trial, from the chief
    assert "chief: keras-tuner oracle on 127.0.0.1:" in out.read_text()
    client, runs = study_runs(store)
    (parent,) = runs["study"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_completed"] == MAX_TRIALS
    trials = runs["trial"]
    assert sorted(r.data.tags["trial_id"] for r in trials) == [str(i) for i in range(MAX_TRIALS)]
    for run in trials:
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["worker"] in ("worker0", "worker1")
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs["baseline"])
    board = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="leaderboard.csv",
                                                            dst_path=str(tmp_path / "board"),
                                                            tracking_uri=f"sqlite:///{store}/mlflow.db"))
    assert sorted(board[board["kind"] == "trial"]["run_id"]) == sorted(r.info.run_id for r in trials)
    assert parent.data.tags["best_trial_run_id"] in {r.info.run_id for r in trials}
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"leaderboard.csv", "model", "best_params.json"}
    assert set(kt_status(store / "study").values()) == {"COMPLETED"}
    assert processes_of(store / "study" / "workers") == []
    # The saved project lists no ended trial as ongoing: a resume must not hand one out again.
    assert json.loads((store / "study" / "tuner" / "oracle.json").read_text())["ongoing_trials"] == {}
    proc, out, err = start_tune(args_for(store, digits_cache, MAX_TRIALS + 1), tmp_path / "more")
    assert proc.wait(timeout=WAIT_S * 2) == 0, err.read_text()[-3000:] + out.read_text()[-3000:]
    _, runs = study_runs(store)
    assert sorted(r.data.tags["trial_id"] for r in runs["trial"]) == [str(i) for i in range(MAX_TRIALS + 1)]


@pytest.mark.slow
def test_sigterm_stops_the_launcher_and_every_worker_and_the_study_resumes(store, digits_cache, tmp_path):
    trials = 6
    args = args_for(store, digits_cache, trials, 6, "tuner.verbose=true")
    proc, out, err = start_tune(args, tmp_path / "stopped")
    wait_for(proc, out, rf"^\[1/{trials}\] trial")
    workers = processes_of(store / "study" / "workers")
    assert len(workers) == 2  # both workers are alive
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=WAIT_S) == 143, err.read_text()[-3000:]
    assert err.read_text().strip().splitlines()[-1] == (
        "error: stopped by signal SIGTERM; run the same command again to resume the study")
    deadline = time.monotonic() + 30  # a figure process ends once its worker's pipe closes
    while processes_of(store / "study" / "workers") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_of(store / "study" / "workers") == []
    _, runs = study_runs(store)
    (parent,) = runs["study"]
    assert parent.info.status == "KILLED" and parent.data.tags["failure_reason"] == "stopped by signal SIGTERM"
    open_ones = [r for r in runs["trial"] if r.info.status != "FINISHED"]
    assert open_ones  # the trials the workers were in
    for run in open_ones:
        assert run.info.status == "KILLED" and run.data.tags["failure_reason"] == "stopped by signal SIGTERM"
    done = {r.data.tags["trial_id"] for r in runs["trial"] if r.info.status == "FINISHED"}

    proc, out, err = start_tune(args, tmp_path / "resumed")  # the same command finishes the study
    assert proc.wait(timeout=WAIT_S * 2) == 0, err.read_text()[-3000:]
    assert f"(resuming: {len(done)} done, {trials - len(done)} to run)" in out.read_text()
    _, runs = study_runs(store)
    (parent,) = runs["study"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_completed"] == trials
    finished = [r.data.tags["trial_id"] for r in runs["trial"] if r.info.status == "FINISHED"]
    assert sorted(finished) == [str(i) for i in range(trials)]  # every trial once; none lost
    assert all(r.info.status == "KILLED" for r in runs["trial"] if r.info.status != "FINISHED")


@pytest.mark.slow
def test_a_worker_killed_mid_trial_fails_its_trial_and_the_other_finishes_the_study(store, digits_cache, tmp_path):
    args = args_for(store, digits_cache, MAX_TRIALS, 6, "tuner.verbose=true")
    proc, out, err = start_tune(args, tmp_path / "run")
    log = store / "study" / "workers" / "worker0.log"
    deadline = time.monotonic() + WAIT_S
    while not (log.exists() and "Epoch 2/" in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
        time.sleep(0.2)
    os.kill(worker_pid(store / "study", "worker0"), signal.SIGKILL)
    assert proc.wait(timeout=WAIT_S * 2) == 0, err.read_text()[-3000:] + out.read_text()[-3000:]
    assert "warning: worker worker0 ended (killed by SIGKILL)" in out.read_text()
    _, runs = study_runs(store)
    (parent,) = runs["study"]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_failed"] == 1 and parent.data.metrics["trials_completed"] == MAX_TRIALS - 1
    (failed,) = [r for r in runs["trial"] if r.info.status != "FINISHED"]
    assert failed.info.status == "FAILED" and failed.data.tags["worker"] == "worker0"
    assert failed.data.tags["failure_reason"] == "worker worker0 died (killed by SIGKILL) during this trial"
    assert sorted(r.data.tags["trial_id"] for r in runs["trial"]) == [str(i) for i in range(MAX_TRIALS)]
    status = kt_status(store / "study")
    assert status.pop(failed.data.tags["trial_id"]) == "FAILED" and set(status.values()) == {"COMPLETED"}
    assert f"trial {failed.data.tags['trial_id']} (worker0)" in out.read_text()  # its progress line says FAILED
    assert processes_of(store / "study" / "workers") == []


@pytest.mark.slow
def test_a_chief_killed_by_sigkill_takes_its_workers_and_a_restart_resumes_from_its_project(store, digits_cache, tmp_path):
    args = args_for(store, digits_cache, MAX_TRIALS, 6, "tuner.verbose=true")
    proc, out, err = start_tune(args, tmp_path / "killed")
    wait_for(proc, out, rf"^\[1/{MAX_TRIALS}\] trial")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=WAIT_S) == -9
    deadline = time.monotonic() + WAIT_S  # the workers get SIGTERM from the kernel (PDEATHSIG) and end their runs
    while processes_of(store / "study" / "workers") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_of(store / "study" / "workers") == []
    _, runs = study_runs(store)
    assert [r.info.status for r in runs["study"]] == ["RUNNING"]  # the dead chief's, reconciled on restart
    for run in runs["trial"]:
        assert run.info.status in ("FINISHED", "KILLED")
    done = {r.data.tags["trial_id"] for r in runs["trial"] if r.info.status == "FINISHED"}

    proc, out, err = start_tune(args, tmp_path / "restarted")
    assert proc.wait(timeout=WAIT_S * 2) == 0, err.read_text()[-3000:]
    assert "Reloading Tuner from" in out.read_text()  # keras-tuner's project: the trials already made
    assert f"(resuming: {len(done)} done, {MAX_TRIALS - len(done)} to run)" in out.read_text()
    _, runs = study_runs(store)
    (parent,) = runs["study"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_completed"] == MAX_TRIALS
    finished = [r.data.tags["trial_id"] for r in runs["trial"] if r.info.status == "FINISHED"]
    assert sorted(finished) == [str(i) for i in range(MAX_TRIALS)]
    assert set(kt_status(store / "study").values()) == {"COMPLETED"}


def test_an_unreachable_tracking_server_is_one_line_before_any_worker_starts(store, digits_cache):
    proc = run_cli("tune", f"data.cache_dir={digits_cache}", f"study_dir={store}/study", "tuner.workers=2",
                   "tracking.uri=http://127.0.0.1:1")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: tracking server http://127.0.0.1:1 is unreachable: [Errno 111] Connection refused"]
    assert not (store / "study" / "workers").exists()


@pytest.mark.parametrize("holder", ["plain socket", "another keras-tuner chief (gRPC)"])
def test_a_taken_oracle_address_is_one_line_before_anything_starts(store, digits_cache, holder):
    """The oracle's port is bound before the parent run or any worker exists. A gRPC server (as another
    study's chief) binds with SO_REUSEPORT: sharing its port would send our workers to its trials."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    if holder == "plain socket":
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port, release = taken.getsockname()[1], taken.close
    else:
        other = grpc.server(ThreadPoolExecutor(max_workers=1))
        port = other.add_insecure_port("127.0.0.1:0")
        other.start()
        release = lambda: other.stop(None)  # noqa: E731
    try:
        proc = run_cli("tune", *args_for(store, digits_cache), f"tuner.distributed.address=127.0.0.1:{port}")
    finally:
        release()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: tuner.distributed.address=127.0.0.1:{port}: the chief cannot listen there (Address already in use); "
        "pick another (port 0: a free one)"]
    assert not (store / "study" / "workers").exists()
    client = mlflow.tracking.MlflowClient(f"sqlite:///{store}/mlflow.db")
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


@pytest.mark.slow
def test_a_stop_while_early_workers_start_leaves_none_behind(store, digits_cache, tmp_path):
    """Workers start as soon as the parent run exists, while the chief runs its baselines: a SIGTERM
    then stops them too (exit 143, one line), and the same command finishes the study."""
    args = args_for(store, digits_cache, 2)
    proc, out, err = start_tune(args, tmp_path / "stopped")
    deadline = time.monotonic() + WAIT_S
    while not (store / "study" / "workers" / "worker1.log").exists():
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=WAIT_S) == 143, err.read_text()[-3000:]
    assert err.read_text().strip().splitlines()[-1] == (
        "error: stopped by signal SIGTERM; run the same command again to resume the study")
    assert processes_of(store / "study" / "workers") == []
    proc, out, err = start_tune(args, tmp_path / "resumed")
    assert proc.wait(timeout=WAIT_S * 2) == 0, err.read_text()[-3000:]
    _, runs = study_runs(store)
    assert sorted(r.data.tags["trial_id"] for r in runs["trial"] if r.info.status == "FINISHED") == ["0", "1"]


@pytest.fixture
def server(store):
    """``mlflow server`` over the test's SQLite store on 127.0.0.1 (what ``make server`` runs)."""
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (store / "server.log").open("w")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
                             f"sqlite:///{store}/mlflow.db", "--artifacts-destination", f"{store}/served",
                             "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (store / "server.log").read_text()[-2000:]
            time.sleep(0.5)
    yield f"http://127.0.0.1:{port}"
    os.killpg(proc.pid, signal.SIGTERM)  # the server and the uvicorn workers it started
    proc.wait(timeout=60)


@pytest.mark.slow
def test_six_trials_with_two_workers_through_the_tracking_server(store, digits_cache, server, tmp_path):
    trials = 6
    args = [a for a in args_for(store, digits_cache, trials, 2) if not a.startswith("tracking.")]
    proc, out, err = start_tune([*args, f"tracking.uri={server}"], tmp_path / "run")
    assert proc.wait(timeout=WAIT_S * 3) == 0, err.read_text()[-3000:] + out.read_text()[-3000:]
    _, runs = study_runs(store)  # read from the server's SQLite file itself
    (parent,) = runs["study"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_completed"] == trials
    assert len(runs["trial"]) == trials
    assert sorted(r.data.tags["trial_id"] for r in runs["trial"]) == [str(i) for i in range(trials)]
    for run in [*runs["trial"], *runs["baseline"]]:
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")  # the server keeps the artifacts
    assert (store / "served").is_dir() and any((store / "served").rglob("leaderboard.csv"))


@pytest.mark.slow
def test_a_joblib_multirun_writes_two_studies_to_one_store_each_under_its_own_parent(store, digits_cache, tmp_path):
    proc = run_cli("tune", "-m", "hydra/launcher=joblib", *tracking_overrides(store), f"data.cache_dir={digits_cache}",
                   "study=ja,jb", f"study_dir={store}/studies/${{study}}", f"hydra.sweep.dir={tmp_path}/sweep",
                   "data.n_train=600", "data.n_test=200", "training.epochs=2", "tuner.max_trials=2",
                   "confirm.top_k=0", "trial_figures=false", timeout=WAIT_S * 3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, runs = study_runs(store)
    parents = {r.data.tags["study"]: r for r in runs["study"]}
    assert sorted(parents) == ["ja", "jb"] and all(p.info.status == "FINISHED" for p in parents.values())
    for name, parent in parents.items():
        mine = [r for r in runs["trial"] if r.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert sorted(r.data.tags["trial_id"] for r in mine) == ["0", "1"], name
        assert all(r.data.tags["study"] == name and r.info.status == "FINISHED" for r in mine)
    assert len(runs["trial"]) == 4


def test_a_jax_worker_with_one_thread_runs_xla_on_one_thread(monkeypatch):
    from siamese import backend, worker

    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    worker._xla_threads("tensorflow", 1)
    worker._xla_threads("jax", 2)
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"  # TensorFlow's pools are set otherwise; 2 threads: XLA's own
    worker._xla_threads("jax", 1)
    worker._xla_threads("jax", 1)  # once
    assert os.environ["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x {backend.ONE_XLA_THREAD}"
