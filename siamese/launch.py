"""Local worker processes of a study: started, and stopped, by the process that owns the study.

The chief (:mod:`siamese.distributed`) starts them as soon as the study's parent run exists, so
their start-up (Keras, the data, MLflow) overlaps its own baselines and tuner set-up: keras-tuner's
client waits for the oracle to listen (``wait_for_ready``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Protocol

from omegaconf import DictConfig, OmegaConf

from siamese.errors import ConfigError
from siamese.stops import Stopped

WORKERS_DIR = "workers"  # under the study's folder: the workers' config, logs and keras-tuner folders


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the launcher dies (even by SIGKILL), so no worker is
    left orphaned waiting an hour for a chief that is gone (keras-tuner#983)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_workers(cfg: DictConfig, folder: Path, parent_id: str, workers: int, threads: int,
                  address: str) -> dict[str, tuple[subprocess.Popen, Path]]:
    """Start ``workers`` worker processes (:mod:`siamese.worker`) of the study in ``folder``, each
    with ``threads`` TensorFlow threads and its log file under ``folder/workers``; keyed by tuner id."""
    folder = folder / WORKERS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yaml"  # the study's resolved config: every worker runs the same study
    config.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    threads = str(threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads,
           "TF_NUM_INTEROP_THREADS": threads, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    procs = {}
    for i in range(workers):
        tuner_id = f"worker{i}"
        log = folder / f"{tuner_id}.log"
        with log.open("w") as out:
            # Its own session: Ctrl-C reaches the launcher only, which stops each worker once.
            procs[tuner_id] = (subprocess.Popen(
                [sys.executable, "-m", "siamese.worker", str(config), tuner_id, address, parent_id, threads],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=_die_with_parent), log)
    return procs


@dataclass
class Launch:
    """Local workers started ahead of the oracle they will ask (keyed by tuner id, with their logs)."""

    procs: dict[str, tuple[subprocess.Popen, Path]]


@dataclass
class Endpoint:
    """The chief's gRPC server, bound to its port but not serving yet, and that address."""

    server: Any
    address: str


def _reserve(host: str, port: int) -> int:
    """``port`` (0: a free one) if nothing holds it on ``host``. The probe binds without SO_REUSEPORT,
    so it fails on a port any socket holds, another keras-tuner chief's included (gRPC binds with
    SO_REUSEPORT and would otherwise share the port, and our workers would ask that chief)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, port))
        return int(probe.getsockname()[1])


@contextmanager
def endpoint(host: str, port: int, threads: int) -> Iterator[Endpoint]:
    """Bind the oracle's address before the study starts anything (no parent run, no worker yet):
    a taken or foreign address is one line. The server (``threads`` handler threads, SO_REUSEPORT off)
    is stopped on exit; :func:`siamese.distributed.search` adds the oracle and starts it.

    Raises:
        ConfigError: the address is taken or not this machine's.
    """
    import grpc

    where = f"tuner.distributed.address={host}:{port}"
    try:
        port = _reserve(host, port)
        server = grpc.server(ThreadPoolExecutor(max_workers=threads), options=[("grpc.so_reuseport", 0)])
        bound = server.add_insecure_port(f"{host}:{port}")
    except (OSError, RuntimeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "port in use, or not this machine's address"
        raise ConfigError(f"{where}: the chief cannot listen there ({why}); pick another (port 0: a free one)") from None
    if not bound:
        raise ConfigError(f"{where}: the chief cannot listen there (port in use, or not this machine's address); "
                          "pick another (port 0: a free one)")
    try:
        yield Endpoint(server, f"{host}:{bound}")
    finally:
        server.stop(None)


class WorkerSettings(Protocol):
    """What starting local workers reads (:class:`siamese.distributed.Distributed` has it)."""

    workers: int
    threads: int
    grace_s: float


@contextmanager
def local_workers(cfg: DictConfig, folder: Path, parent_id: str, dist: WorkerSettings, address: str) -> Iterator[Launch]:
    """Start the local workers as soon as the parent run exists, so that their start-up (Keras,
    data, MLflow) overlaps the chief's baselines and tuner set-up; keras-tuner's client waits for
    the oracle at ``address`` (bound already: :func:`endpoint`) to serve (``wait_for_ready``). A
    failure or stop before the chief's search takes them over (:func:`siamese.distributed.search`)
    stops them.
    """
    procs = start_workers(cfg, folder, parent_id, dist.workers, dist.threads, address) if dist.workers else {}
    try:
        yield Launch(procs)
    except BaseException as exc:
        stop(procs, exc.signum if isinstance(exc, Stopped) else signal.SIGTERM, dist.grace_s)
        raise


def stop(procs: dict[str, tuple[subprocess.Popen, Path]], signum: int, grace_s: float) -> list[str]:
    """Send ``signum`` to every live worker and wait up to ``grace_s`` for all of them.

    Returns:
        The tuner ids of workers still alive after ``grace_s``, now killed (SIGKILL) and reaped.
    """
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.send_signal(signum)
    deadline = time.monotonic() + grace_s
    killed = []
    for tuner_id, (proc, _) in procs.items():
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed.append(tuner_id)
    return killed
