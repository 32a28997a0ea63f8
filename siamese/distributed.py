"""Parallel trials on keras-tuner's distributed engine: the chief side.

The process that runs ``python -m siamese.tune tuner.workers=N`` (or ``tuner.distributed.role=chief``)
owns the study as a single process does (its lock, its MLflow parent run, baselines, the finish) and,
instead of running trials itself, serves its oracle over gRPC (keras-tuner's ``OracleServicer``) to
worker processes (:mod:`siamese.worker`), N of them started here as children. Each worker asks the
oracle for a trial, logs it as a nested run of the parent and reports it back; this process prints
one progress line per ended trial, ends the trial of a worker that died FAILED (in the oracle and in
MLflow), stops every worker on a stop, and finishes the study once they have all ended.

Nothing here imports Keras at import time; gRPC and keras-tuner are imported when a search starts.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from siamese import tracking
from siamese.errors import ConfigError, TrainingFailed
from siamese.board import ENDED, Board, end_runs
from siamese.launch import Endpoint, Launch, stop
from siamese.stops import Stopped

if TYPE_CHECKING:
    from siamese.study import Study, StudyTuner

ROLES = ("chief", "worker")


@dataclass(frozen=True)
class Distributed:
    """``tuner.workers`` and ``tuner.distributed``, checked.

    Attributes:
        workers: local worker processes (0: none).
        role: ``chief``, ``worker`` or None (a local launcher, or a single process).
        host, port: where the chief's oracle listens (port 0: a free one).
        tuner_id: a worker's keras-tuner id; parent_run: a worker's parent run id.
        threads: TensorFlow threads per local worker; grace_s: a stopped worker's time to end its runs.
    """

    workers: int
    role: str | None
    host: str
    port: int
    tuner_id: str | None
    parent_run: str | None
    threads: int
    grace_s: float

    @classmethod
    def of(cls, cfg: DictConfig) -> "Distributed":
        """Read ``cfg.tuner.workers`` and ``cfg.tuner.distributed``.

        Raises:
            ConfigError: a bad value, named with its key and the fix.
        """
        node = cfg.tuner.get("distributed") or {}
        workers = cfg.tuner.get("workers", 0)
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            raise ConfigError(f"tuner.workers must be a whole number >= 0 (0: trials in this process), got {workers!r}")
        role = node.get("role")
        if role not in (None, *ROLES):
            raise ConfigError(f"tuner.distributed.role must be one of {list(ROLES)} (or null), got {role!r}")
        if role == "worker" and workers:
            raise ConfigError("tuner.workers must be 0 with tuner.distributed.role=worker (a worker runs trials itself)")
        address = node.get("address")
        if role and not address:
            raise ConfigError(f"tuner.distributed.role={role} needs tuner.distributed.address=HOST:PORT (the chief's)")
        host, port = ("127.0.0.1", 0) if not address else _address(str(address))
        tuner_id = node.get("tuner_id")
        if tuner_id is not None and "chief" in str(tuner_id):
            raise ConfigError(f"tuner.distributed.tuner_id={tuner_id!r}: keras-tuner takes any id containing "
                              "'chief' for the chief; pick another")
        threads = node.get("threads")
        threads = max(1, _cores() // max(workers, 1)) if threads is None else threads
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ConfigError(f"tuner.distributed.threads must be a whole number >= 1 (or null), got {threads!r}")
        grace_s = node.get("grace_s", 30)
        if isinstance(grace_s, bool) or not isinstance(grace_s, (int, float)) or grace_s < 0:
            raise ConfigError(f"tuner.distributed.grace_s must be a number of seconds >= 0, got {grace_s!r}")
        return cls(workers, role, host, port, None if tuner_id is None else str(tuner_id), node.get("parent_run"),
                   threads, float(grace_s))

    @property
    def active(self) -> bool:
        """Whether this process serves the oracle to workers instead of running trials."""
        return self.workers > 0 or self.role == "chief"


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"tuner.distributed.address={text!r} is not HOST:PORT (e.g. 10.0.0.5:8470)")
    return host, int(port)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _tail(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.exists() else []
    return lines[-1][:300] if lines else "no output"


def _how(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def _reap(board: Board, parent_id: str, tuner_id: str, why: str, status: str = "FAILED") -> None:
    """The trial a dead worker held ends ``status`` in the oracle and in MLflow, with ``why``."""
    trial = next((t for tid, t in list(board.oracle.ongoing_trials.items()) if tid == tuner_id), None)
    if trial is None:
        return
    reason = f"worker {tuner_id} {why} during this trial"
    end_runs(parent_id, trial.trial_id, "KILLED" if status == "KILLED" else "FAILED", reason)
    if status == "FAILED":  # a stopped study keeps it running in the oracle: a resume runs it again
        trial.status, trial.message = "FAILED", reason
        board.end_trial(trial)


def stop_workers(board: Board, parent_id: str, procs: dict, signum: int, grace_s: float) -> None:
    """Send ``signum`` to every live worker; one still alive after ``grace_s`` is killed and its runs KILLED."""
    for tuner_id in stop(procs, signum, grace_s):
        _reap(board, parent_id, tuner_id, f"did not stop within {grace_s:.0f}s and was killed", "KILLED")


def _chief_done(oracle: Any, servicer: Any) -> bool:
    """Every trial made has ended and none waits to run again (a resumed study's interrupted ones)."""
    return ((servicer.stop_triggered or len(oracle.trials) >= oracle.max_trials) and not oracle.ongoing_trials
            and not oracle._retry_queue)


def quiet_keras_tuner() -> None:
    """keras-tuner 1.4.8 prints a conditional parameter's first value each time a trial crosses gRPC
    (a stray ``print`` in ``Parent.to_proto``): silenced in that module only."""
    from keras_tuner.src.engine import conditions

    conditions.print = lambda *args, **kwargs: None


def search(study: "Study", tuner: "StudyTuner", dist: Distributed, end: Endpoint, launch: Launch) -> list[str]:
    """Serve the study's oracle on ``end`` (bound by :func:`siamese.launch.endpoint`) until every trial
    has ended and every local worker (``launch``'s, :func:`siamese.launch.local_workers`) has exited.

    Returns:
        The trial runs whose figures a worker could not draw (tagged ``figures_error``).

    Raises:
        TrainingFailed: every local worker ended before the study did (the last one's last line).
    """
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    quiet_keras_tuner()
    oracle = tuner.oracle
    oracle.verbose = 0
    # A trial that had ended can still be listed as ongoing in a reloaded project (keras-tuner saves
    # before it pops the ended trial): handed out again by create_trial, it would run twice.
    for tuner_id, trial in list(oracle.ongoing_trials.items()):
        if oracle.trials.get(trial.trial_id) is not None and oracle.trials[trial.trial_id].status in ENDED:
            oracle.ongoing_trials.pop(tuner_id)
    board = Board(study, oracle)
    tuner.save()  # the project can be reloaded: a restarted chief resumes from it
    # More than keras-tuner's one thread: a worker's slow or failing call does not hold the others
    # (keras-tuner#915); the oracle's methods are synchronized.
    server = end.server
    servicer = OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.start()
    print(f"chief: keras-tuner oracle on {end.address}; {dist.workers or 'remote'} worker(s)"
          f"{f', {dist.threads} thread(s) each' if dist.workers else ''}", flush=True)
    procs = launch.procs
    exits: dict[str, int] = {}
    try:
        while True:
            for tuner_id, (proc, log) in procs.items():
                if tuner_id not in exits and proc.poll() is not None:
                    exits[tuner_id] = proc.returncode
                    if proc.returncode:
                        print(f"warning: worker {tuner_id} ended ({_how(proc.returncode)}): {_tail(log)}", flush=True)
                        _reap(board, study.parent_id, tuner_id, f"died ({_how(proc.returncode)})")
            if procs and len(exits) == len(procs):
                break
            if not procs and _chief_done(oracle, servicer):
                _linger(oracle, dist.grace_s)
                break
            time.sleep(0.2)
    except BaseException as exc:
        stop_workers(board, study.parent_id, procs, exc.signum if isinstance(exc, Stopped) else signal.SIGTERM,
                     dist.grace_s)
        raise
    finally:
        server.stop(grace=1.0)
    if board.stopped:
        print(f"warning: the search stopped: {board.stopped}", flush=True)
    elif not _chief_done(oracle, servicer) and procs:
        last = max(procs, key=lambda t: procs[t][0].pid)
        raise TrainingFailed(f"every worker ended before study '{study.settings.name}' did; worker {last}: "
                             f"{_tail(procs[last][1])} (log: {procs[last][1]})")
    study.best = study._saved_best()  # the workers kept the best model on disk
    frame = tracking.children(study.parent_id)
    return list(frame[frame["tags.figures_error"].notna()]["run_id"]) if "tags.figures_error" in frame else []


def _linger(oracle: Any, grace_s: float) -> None:
    """Remote workers get the oracle's STOPPED before it goes (keras-tuner#983: else they wait an hour)."""
    deadline = time.monotonic() + grace_s
    while oracle.tuner_ids and time.monotonic() < deadline:
        time.sleep(0.5)


def default_tuner_id() -> str:
    """A cluster worker's id when none is given: its host and process."""
    return f"worker-{socket.gethostname()}-{os.getpid()}"
