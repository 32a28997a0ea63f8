"""Does the project's SQLite store hold N concurrent writers, directly and through ``mlflow server``?

    python -m benchmarks.writers --writers 4 --runs 15 --metrics 30

Each writer is a process that, like a study's worker, opens runs nested under one parent and logs
params, a tag, metrics step by step and a small artifact, then ends them. It counts every call that
raised (``database is locked`` and the like) and every run that did not end FINISHED. The same load
runs twice on fresh stores: each writer writing the SQLite file itself, then all of them through one
``mlflow server`` over a SQLite file (127.0.0.1, a free port).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from multiprocessing import Pool
from pathlib import Path


def _write(job: tuple[str, str, int, int, int]) -> dict[str, float]:
    uri, parent, index, runs, metrics = job
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"  # an error counts as one: no silent retry here
    import mlflow
    from mlflow.tracking import MlflowClient

    client, errors, seconds = MlflowClient(uri), 0, 0.0
    exp = client.get_run(parent).info.experiment_id
    for r in range(runs):
        t0 = time.perf_counter()
        try:
            run = client.create_run(exp, run_name=f"w{index}-{r}", tags={"mlflow.parentRunId": parent, "kind": "trial"})
            rid = run.info.run_id
            client.log_param(rid, "writer", str(index))
            for step in range(metrics):
                client.log_metric(rid, "val_auc", step / metrics, step=step)
            client.log_text(rid, "x" * 100, "note.txt")
            client.set_terminated(rid, "FINISHED")
        except Exception as exc:  # counted, not raised: the question is how often
            errors += 1
            print(f"writer {index}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}", flush=True)
        seconds += time.perf_counter() - t0
    del mlflow
    return {"errors": errors, "seconds": seconds}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(uri: str, writers: int, runs: int, metrics: int) -> dict[str, float]:
    """``writers`` processes at once on ``uri``; calls that failed, runs not FINISHED, wall time."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.create_experiment(f"writers-{time.time_ns()}")
    parent = client.create_run(exp, run_name="parent").info.run_id
    t0 = time.perf_counter()
    with Pool(writers) as pool:
        out = pool.map(_write, [(uri, parent, i, runs, metrics) for i in range(writers)])
    wall = time.perf_counter() - t0
    found = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'", max_results=10000)
    finished = sum(r.info.status == "FINISHED" for r in found)
    return {"writers": writers, "runs_asked": writers * runs, "runs_finished": finished,
            "failed_calls": sum(o["errors"] for o in out), "wall_s": round(wall, 1),
            "runs_per_s": round(finished / wall, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=15, help="runs per writer")
    parser.add_argument("--metrics", type=int, default=30, help="metric steps per run")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="writers-") as tmp:
        direct = f"sqlite:///{tmp}/direct/mlflow.db"
        Path(tmp, "direct").mkdir()
        from mlflow.tracking import MlflowClient

        MlflowClient(direct).search_experiments()  # the schema, made once (as tracking.configure does)
        results["sqlite file, each writer direct"] = measure(direct, args.writers, args.runs, args.metrics)
        Path(tmp, "served").mkdir()
        port = _free_port()
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
             f"sqlite:///{tmp}/served/mlflow.db", "--artifacts-destination", f"{tmp}/served/artifacts",
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("mlflow server did not start") from None
                    time.sleep(0.5)
            results["sqlite file, through mlflow server"] = measure(f"http://127.0.0.1:{port}", args.writers,
                                                                    args.runs, args.metrics)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    print(json.dumps(results, indent=1))
    return 0 if all(r["failed_calls"] == 0 and r["runs_finished"] == r["runs_asked"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
