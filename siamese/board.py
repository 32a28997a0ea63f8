"""The chief's view of a distributed search: a progress line per ended trial from any worker, the
consecutive-failure stop, and the MLflow runs of a trial a worker could not end itself."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from mlflow.tracking import MlflowClient

from siamese import tracking
from siamese.report import short

if TYPE_CHECKING:
    from siamese.study import Study

ENDED = ("COMPLETED", "FAILED", "INVALID")


class Board:
    """The chief's view of the search: a progress line per ended trial, the consecutive-failure stop.

    keras-tuner raises its consecutive-failure error inside ``end_trial``, in the gRPC thread, before
    the trial is saved: the worker would get an RPC error and the trial would stay running. Here the
    oracle's own check is off and this one stops handing out trials instead (``max_trials`` is cut
    to the trials made), so the running ones still end and the finish says why.
    """

    def __init__(self, study: "Study", oracle: Any) -> None:
        self.study, self.oracle = study, oracle
        self.started = time.perf_counter()
        self.trial_started: dict[str, float] = {}
        self.owner: dict[str, str] = {}
        self.stopped: str | None = None
        self.limit = oracle.max_consecutive_failed_trials
        oracle.max_consecutive_failed_trials = None
        self.lock = threading.Lock()
        from keras_tuner import synchronized  # the oracle's own lock: no save while another call writes

        end = oracle.end_trial

        def end_and_save(oracle: Any, trial: Any) -> None:
            end(trial)
            # keras-tuner saves the oracle before it pops the ended trial from ongoing_trials; saved
            # again, the project a resume reloads does not hand that trial out a second time.
            oracle.save()

        self._create = oracle.create_trial
        locked = synchronized(end_and_save)  # wrapped once; the lock is looked up by the oracle passed
        self._end = lambda trial: locked(oracle, trial)
        oracle.create_trial, oracle.end_trial = self.create_trial, self.end_trial

    def create_trial(self, tuner_id: str) -> Any:
        trial = self._create(tuner_id)
        if trial.status == "RUNNING" and trial.trial_id not in self.trial_started:
            with self.lock:
                self.trial_started[trial.trial_id] = time.perf_counter()
                self.owner[trial.trial_id] = tuner_id
        return trial

    def end_trial(self, trial: Any) -> None:
        self._end(trial)
        with self.lock:
            ended = self.oracle.trials[trial.trial_id]
            if ended.status in ENDED:
                print(self.line(ended), flush=True)
            self._check_failures()

    def _check_failures(self) -> None:
        trials, order = self.oracle.trials, self.oracle.end_order
        run = 0
        for trial_id in order[::-1]:
            if trials[trial_id].status != "FAILED":
                break
            run += 1
        if self.limit and run >= self.limit and self.stopped is None:
            self.stopped = f"Number of consecutive failures exceeded the limit of {self.limit}"
            self.oracle.max_trials = len(trials)  # no new trial: the running ones end, then the workers

    def line(self, trial: Any) -> str:
        """``[n/N] trial 03 (worker1) params | objective best | seconds, elapsed, left``."""
        s, oracle = self.study.settings, self.oracle
        done = [t for t in oracle.trials.values() if t.status in ENDED]
        scores = [t.score for t in done if t.status == "COMPLETED" and t.score is not None]
        best = (max if s.sign > 0 else min)(scores) if scores else None
        values = self.study.trial_values(trial)[0]
        if trial.status == "COMPLETED":
            result = f"{s.objective}={trial.score:.4f}"
        else:
            result = f"FAILED ({(trial.message or trial.status).strip().splitlines()[-1][:60]})"
        now = time.perf_counter()
        elapsed = now - self.started
        left = elapsed / max(len(done), 1) * max(s.max_trials - len(done), 0)
        took = now - self.trial_started.get(trial.trial_id, self.started)
        return (f"[{len(done)}/{s.max_trials}] trial {trial.trial_id} ({self.owner.get(trial.trial_id, '?')}) "
                f"{short(values)} | {result} best={'-' if best is None else f'{best:.4f}'} "
                f"| {took:.0f}s, elapsed {elapsed / 60:.1f}m, ~{left / 60:.1f}m left")


def end_runs(parent_id: str, trial_id: str, status: str, reason: str) -> list[str]:
    """End the trial's runs still RUNNING under the parent (and their executions) with ``reason``."""
    client, ended = MlflowClient(), []
    frame = tracking.children(parent_id)
    if frame.empty or "tags.trial_id" not in frame.columns:
        return ended
    rows = frame[frame["tags.trial_id"] == trial_id]
    queue = list(zip(rows["run_id"], rows["status"]))
    while queue:
        run_id, run_status = queue.pop()
        kids = tracking.children(run_id)  # the trial's executions, if it had several
        queue.extend(zip(kids["run_id"], kids["status"]) if not kids.empty else [])
        if run_status == "RUNNING":
            client.set_tag(run_id, "failure_reason", reason)
            client.set_terminated(run_id, status)
            ended.append(run_id)
    return ended
