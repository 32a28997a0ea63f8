"""A run's validation figures (learning curves, ROC, score histogram), drawn in this process or by a
background process, so that a study's next trial does not wait for the last one's figures.

Drawing is pure Python under the GIL: a thread would slow the training beside it by about what it
saves (measured on digits: a 4.0 s fit took 4.6 s beside a thread drawing 0.5 s of figures). A small
Keras model trains on about one core (CPU time 1.1-1.2x wall), so a second process draws on the
core training leaves idle. The worker imports matplotlib and MLflow, not TensorFlow.

Figures never decide a run's status: a run whose training and metrics are complete ends FINISHED
(:meth:`siamese.tracking.Tracker.run`), tagged ``figures_missing=true`` until its figures are
logged; a figure that cannot be drawn adds ``figures_error``. With a ``keep_dir`` (a study's
folder) each pending job is also kept on disk until its figures are logged, so the figures a stop,
a crash or SIGKILL left undrawn are drawn when the study resumes (:meth:`Figures.redraw`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from siamese import plots
from siamese.errors import ConfigError

MODES = ("background", "inline", "off")
MISSING_TAG, ERROR_TAG = "figures_missing", "figures_error"


@dataclass
class FigureJob:
    """What a run's figures are drawn from: small arrays, cheap to send to the worker.

    ``keep`` is the job's copy on disk (removed once its figures are logged), if it has one.
    """

    run_id: str
    history: dict[str, list[float]]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (labels, scores)
    threshold: float
    keep: str | None = None

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


def deliver(job: FigureJob, client: MlflowClient) -> str | None:
    """Log a pending job's figures and clear its ``figures_missing`` tag and copy on disk.

    Returns:
        None, or why the figures could not be drawn (then also the run's ``figures_error`` tag;
        the run stays FINISHED and tagged ``figures_missing``).
    """
    try:
        job.log(client)
    except Exception as exc:  # the run keeps its metrics; the study and the next runs go on
        error = f"figures: {type(exc).__name__}: {exc}"[:5000]
        client.set_tag(job.run_id, ERROR_TAG, error)
    else:
        error = None
        with contextlib.suppress(MlflowException):  # already cleared by an earlier delivery
            client.delete_tag(job.run_id, MISSING_TAG)
    if job.keep:  # a drawing that failed once fails again: it is not kept either
        Path(job.keep).unlink(missing_ok=True)
    return error


def mode_of(value: Any) -> str:
    """``trial_figures`` as a mode; ``false`` (as Hydra parses it) means off."""
    if value is False:
        return "off"
    if value not in MODES:
        raise ConfigError(f"trial_figures={value!r} is not one of {list(MODES)} (or false)")
    return str(value)


PENDING_FIGURES = "figures_pending"  # under a study's folder: figure jobs not yet drawn


class Figures:
    """Where runs' figures are drawn: ``inline`` (here), ``background`` (a worker process) or ``off``.

    Args:
        mode: one of :data:`MODES` (or ``False``).
        tracking_uri: the store; default MLflow's current one.
        keep_dir: where pending jobs are kept until drawn (a study's folder). Without it, ``inline``
            draws during the run (a single training run) and a stop loses undrawn figures.
        grace_s: how long a stopped study waits for the worker before drawing what is left itself.
    """

    def __init__(self, mode: str = "inline", tracking_uri: str | None = None, keep_dir: Path | None = None,
                 grace_s: float = 2.0) -> None:
        self.mode = mode_of(mode)
        self.client = MlflowClient(tracking_uri)
        self.uri = self.client.tracking_uri
        self.keep_dir, self.grace_s = keep_dir, grace_s
        self.pending: dict[str, FigureJob] = {}  # runs still open
        self.sent: dict[str, FigureJob] = {}  # handed to the worker
        self.failed: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.closed = False

    def add(self, job: FigureJob) -> None:
        """Off: nothing. Inline without ``keep_dir``: draw now. Else: tag the run ``figures_missing``,
        keep the job (on disk too, with ``keep_dir``) until its run has ended."""
        if self.mode == "off":
            return
        if self.mode == "inline" and self.keep_dir is None:
            job.log(self.client)
            return
        self.client.set_tag(job.run_id, MISSING_TAG, "true")
        if self.keep_dir is not None:
            self.keep_dir.mkdir(parents=True, exist_ok=True)
            job.keep = str(self.keep_dir / f"{job.run_id}.pkl")
            partial = Path(job.keep + ".partial")
            partial.write_bytes(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
            os.replace(partial, job.keep)
        self.pending[job.run_id] = job

    def takes_over(self, run_id: str) -> bool:
        """Whether this run's figures are pending here."""
        return run_id in self.pending

    def drop(self, run_id: str) -> None:
        """The run failed or was stopped: its figures are not drawn (nor missing)."""
        job = self.pending.pop(run_id, None)
        if job is not None:
            self._forget(job.run_id, job.keep)

    def _forget(self, run_id: str, keep: str | None) -> None:
        if keep:
            Path(keep).unlink(missing_ok=True)
        with contextlib.suppress(MlflowException):
            self.client.delete_tag(run_id, MISSING_TAG)

    def hand_over(self, run_id: str) -> None:
        """The run has ended FINISHED: draw its figures now (inline) or send them to the worker."""
        job = self.pending.pop(run_id)
        if self.mode == "inline":
            error = deliver(job, self.client)
            if error:
                self.failed.append(f"{run_id}: {error}")
            return
        self.sent[run_id] = job
        if self.proc is None:
            # Its own process group: a Ctrl-C in the terminal reaches the study, which decides.
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from siamese.figures import serve; serve()", self.uri],
                stdin=subprocess.PIPE, process_group=0)
        try:
            pickle.dump(job, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: close() draws this run's figures here

    def redraw(self) -> int:
        """Hand over again the jobs a stopped or killed study left in ``keep_dir``.

        Returns:
            How many runs' figures are drawn again (jobs of runs that did not finish are dropped).
        """
        count = 0
        if self.mode == "off" or self.keep_dir is None:
            return count
        for path in sorted(self.keep_dir.glob("*.pkl")):
            try:
                job: FigureJob = pickle.loads(path.read_bytes())
                run = self.client.get_run(job.run_id)
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError, MlflowException):
                path.unlink(missing_ok=True)
                continue
            if run.info.status != "FINISHED" or MISSING_TAG not in run.data.tags:
                self._forget(job.run_id, str(path))  # a run that did not finish has no figures to wait for
                continue
            job.keep = str(path)
            self.pending[job.run_id] = job
            self.hand_over(job.run_id)
            count += 1
        return count

    def close(self, stopped: bool = False) -> list[str]:
        """Wait for the worker, then draw here what it left (it died, or the study ``stopped``: then
        the worker gets ``grace_s`` to finish the job it is on). A second stop leaves the rest tagged
        ``figures_missing`` and kept in ``keep_dir`` for :meth:`redraw`.

        Returns:
            One line per run whose figures could not be drawn: run id and reason.
        """
        if self.closed:
            return []
        self.closed = True
        code = None
        if self.proc is not None:
            with contextlib.suppress(BrokenPipeError, OSError):  # end of jobs; a dead worker is handled below
                self.proc.stdin.close()
            try:
                code = self.proc.wait(timeout=self.grace_s if stopped else None)
            except subprocess.TimeoutExpired:  # still starting or drawing: this process is quicker
                self.proc.kill()
                code = self.proc.wait()
        lost, left = list(self.failed), []
        for run_id, job in self.sent.items():
            tags = self.client.get_run(run_id).data.tags
            if ERROR_TAG in tags:
                lost.append(f"{run_id}: {tags[ERROR_TAG]}")
            elif MISSING_TAG in tags:
                left.append(job)
        if left and not stopped:  # a stop prints one line, elsewhere
            print(f"warning: the figure worker exited (code {code}) before the figures of {len(left)} run(s); "
                  "drawing them here", file=sys.stderr, flush=True)
        lost += [f"{job.run_id}: {error}" for job in left if (error := deliver(job, self.client))]
        return lost

    def __enter__(self) -> "Figures":
        return self

    def __exit__(self, kind: type | None, *_: Any) -> None:
        self.close(stopped=kind is not None and issubclass(kind, KeyboardInterrupt))


def serve() -> None:
    """The worker: read jobs from stdin until it closes (also when the study dies); log each."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    client = MlflowClient(sys.argv[1])
    source = sys.stdin.buffer
    while True:
        try:
            job: FigureJob = pickle.load(source)
        except (EOFError, pickle.UnpicklingError):  # the study closed the pipe, or died writing to it
            return
        deliver(job, client)
