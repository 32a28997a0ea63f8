"""A run's validation figures (learning curves, ROC, score histogram), drawn in this process or by a
background process, so that a study's next trial does not wait for the last one's figures.

Drawing is pure Python under the GIL: a thread would slow the training beside it by about what it
saves (measured on digits: a 4.0 s fit took 4.6 s beside a thread drawing 0.5 s of figures). A small
Keras model trains on about one core (CPU time 1.1-1.2x wall), so a second process draws on the
core training leaves idle. The worker imports matplotlib and MLflow, not TensorFlow.

Lifecycle in the background: :meth:`siamese.tracking.Tracker.run` asks :class:`Figures` (a
:class:`siamese.tracking.RunOwner`) whether it takes a run over; if so it leaves a run whose figures are pending
RUNNING and hands it over; the worker logs the figures and ends the run FINISHED, or FAILED with a
``failure_reason``. :meth:`Figures.close` waits for the worker, and ends any run it left behind as
FAILED (KILLED when the study itself stopped), so no run is marked finished without its figures.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient

from siamese import plots
from siamese.errors import ConfigError

MODES = ("background", "inline", "off")


@dataclass
class FigureJob:
    """What a run's figures are drawn from: small arrays, cheap to send to the worker."""

    run_id: str
    history: dict[str, list[float]]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (labels, scores)
    threshold: float

    def log(self, client: MlflowClient) -> None:
        """Draw the figures and log them as PNGs under ``plots/``."""
        figures: dict[str, Any] = {}
        if self.history:
            figures["learning_curves"] = plots.learning_curves(self.history)
        figures["roc"] = plots.roc(self.curves)
        y_val, s_val = self.curves["val"]
        figures["score_histogram"] = plots.score_histogram(y_val, s_val, self.threshold)
        for name, fig in figures.items():
            client.log_figure(self.run_id, fig, f"plots/{name}.png")


def mode_of(value: Any) -> str:
    """``trial_figures`` as a mode; ``false`` (as Hydra parses it) means off."""
    if value is False:
        return "off"
    if value not in MODES:
        raise ConfigError(f"trial_figures={value!r} is not one of {list(MODES)} (or false)")
    return str(value)


class Figures:
    """Where runs' figures are drawn: ``inline`` (now, here), ``background`` (a worker process) or ``off``."""

    def __init__(self, mode: str = "inline", tracking_uri: str | None = None) -> None:
        self.mode = mode_of(mode)
        self.client = MlflowClient(tracking_uri)
        self.uri = self.client.tracking_uri
        self.pending: dict[str, FigureJob] = {}
        self.sent: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.closed = False

    def add(self, job: FigureJob) -> None:
        """Inline: draw and log now. Background: keep the job until its run ends without error."""
        if self.mode == "inline":
            job.log(self.client)
        elif self.mode == "background":
            self.pending[job.run_id] = job

    def takes_over(self, run_id: str) -> bool:
        """Whether this run's end belongs to the worker (its figures are pending)."""
        return run_id in self.pending

    def drop(self, run_id: str) -> None:
        """The run failed: its figures are not drawn."""
        self.pending.pop(run_id, None)

    def hand_over(self, run_id: str) -> None:
        """Send a run (left RUNNING) to the worker, starting the worker on first use."""
        job = self.pending.pop(run_id)
        self.sent.append(run_id)
        if self.proc is None:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from siamese.figures import serve; serve()", self.uri],
                stdin=subprocess.PIPE)
        try:
            pickle.dump(job, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: close() ends this run as FAILED with the reason

    def close(self, stopped: bool = False) -> list[str]:
        """Wait for the worker (or stop it, when the study ``stopped``) and end what it left behind.

        Returns:
            One line per handed-over run that did not finish: run id and reason.
        """
        if self.closed:
            return []
        self.closed = True
        code = None
        if self.proc is not None:
            if stopped:
                self.proc.kill()
            else:
                with contextlib.suppress(BrokenPipeError, OSError):  # a dead worker: reported below
                    self.proc.stdin.close()
            code = self.proc.wait()
        lost = []
        for run_id in self.sent:
            run = self.client.get_run(run_id)
            if run.info.status == "RUNNING":
                reason = ("the study stopped before this run's figures were logged" if stopped
                          else f"the figure worker exited (code {code}) before logging this run's figures")
                self.client.set_tag(run_id, "failure_reason", reason)
                self.client.set_terminated(run_id, "KILLED" if stopped else "FAILED")
                lost.append(f"{run_id}: {reason}")
            elif run.info.status != "FINISHED":
                lost.append(f"{run_id}: {run.data.tags.get('failure_reason', run.info.status)}")
        return lost

    def __enter__(self) -> "Figures":
        return self

    def __exit__(self, kind: type | None, *_: Any) -> None:
        self.close(stopped=kind is not None)


def serve() -> None:
    """The worker: read jobs from stdin until it closes; log each job's figures and end its run."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    client = MlflowClient(sys.argv[1])
    source = sys.stdin.buffer
    while True:
        try:
            job: FigureJob = pickle.load(source)
        except EOFError:
            return
        try:
            job.log(client)
        except Exception as exc:  # the run fails; the study and the next runs go on
            client.set_tag(job.run_id, "failure_reason", f"figures: {type(exc).__name__}: {exc}"[:5000])
            client.set_terminated(job.run_id, "FAILED")
        else:
            client.set_terminated(job.run_id, "FINISHED")
