"""A study's worker process: trials from the chief's oracle (gRPC), each a nested run of the study's parent.

Started by the chief for local workers (``tuner.workers=N``)::

    python -m siamese.worker <study_dir>/workers/config.yaml <tuner_id> <HOST:PORT> <parent_run_id> <threads>

or on a cluster node with ``python -m siamese.tune … tuner.distributed.role=worker``. A worker owns
no lock and never finishes the study: the chief does, once every trial has ended. A failed trial
fails its run and is reported FAILED to the oracle, whose progress line says so.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from omegaconf import DictConfig, OmegaConf

from siamese import backend
from siamese.distributed import Distributed, default_tuner_id, quiet_keras_tuner
from siamese.errors import ConfigError, TrainingFailed, UserError
from siamese.figures import PENDING_FIGURES, Figures, mode_of
from siamese.launch import WORKERS_DIR
from siamese.stops import Stopped, install_stop_handlers


def _xla_threads(name: str, threads: int) -> None:
    """On JAX with one thread a worker, XLA runs on one thread (set before JAX loads): two workers on
    two cores would otherwise each start a pool as wide as the machine."""
    if name == "jax" and threads == 1 and backend.ONE_XLA_THREAD not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {backend.ONE_XLA_THREAD}".strip()


def _threads(name: str, threads: int) -> None:
    """TensorFlow's thread pools for this process, before its first op (N workers share the cores)."""
    if name == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _parent(tracker: Any, study: str, parent_run: str | None) -> str:
    """The study's parent run: given, or the RUNNING study of this name in the store (its chief's)."""
    import mlflow

    if parent_run:
        try:
            run = mlflow.get_run(parent_run)
        except mlflow.exceptions.MlflowException:
            raise ConfigError(f"tuner.distributed.parent_run={parent_run}: no such run in {mlflow.get_tracking_uri()}") from None
    else:
        run = tracker.find_study(study)
    if run.info.status != "RUNNING":
        raise ConfigError(f"study '{study}' has no running chief (its parent run {run.info.run_id} is "
                          f"{run.info.status}); start the chief first (tuner.distributed.role=chief)")
    return run.info.run_id


def work(cfg: DictConfig, dist: Distributed, tuner_id: str | None = None) -> dict[str, float]:
    """Run trials from the chief's oracle at ``dist.host:dist.port`` until it says the study is done.

    Returns:
        How many trials this worker ran (``trials_run``).

    Raises:
        ConfigError: no parent run to log under, or a bad space.
    """
    tuner_id = tuner_id or dist.tuner_id or default_tuner_id()
    # keras-tuner reads these when a tuner is made: this process is then a client of the chief's oracle.
    os.environ.update({"KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": dist.host,
                       "KERASTUNER_ORACLE_PORT": str(dist.port)})
    _xla_threads(cfg.backend, dist.threads)
    backend.start_for(cfg)
    _threads(cfg.backend, dist.threads)
    import keras_tuner as kt
    from keras_tuner.src import config as kt_config

    from siamese import engine  # Keras: imported once the backend is chosen
    from siamese.search import parse_space
    from siamese.study import Study, StudySettings, StudyTuner, make_oracle

    kt_config.DEBUG = os.environ.get("SIAMESE_DEBUG", "") not in ("", "0")
    quiet_keras_tuner()

    class WorkerTuner(StudyTuner):
        """The study's tuner as a client of the chief: no progress line here, no busy loop when idle."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            create = self.oracle.create_trial

            def create_trial(tid: str) -> Any:
                trial = create(tid)
                if trial.status == "IDLE":  # Hyperband waits for a bracket's trials: ask again in a while
                    time.sleep(1.0)
                return trial

            self.oracle.create_trial = create_trial
            self.ran = 0

        def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
            self.ran += 1
            kt.Tuner.on_trial_end(self, trial)

    params = parse_space(cfg.search.params, cfg)
    settings = StudySettings.of(cfg)
    _, tracker, data = engine.prepare(cfg)
    parent = _parent(tracker, settings.name, dist.parent_run)
    tracker.parent_run_id, tracker.child_tags = parent, {"worker": tuner_id}
    print(f"worker {tuner_id}: study {settings.name}, chief {dist.host}:{dist.port}, parent run {parent}, "
          f"{dist.threads} thread(s)", flush=True)
    with Figures(mode_of(cfg.trial_figures), keep_dir=settings.dir / PENDING_FIGURES) as figures:
        study = Study(cfg, settings, params, data, tracker, parent, figures)
        # Its own keras-tuner folder: the chief's project holds the study's state.
        tuner = WorkerTuner(study, oracle=make_oracle(cfg), directory=str(settings.dir / WORKERS_DIR / tuner_id),
                            project_name="tuner", overwrite=True)
        tuner.search(verbose=0)
        figures.close()
    print(f"worker {tuner_id}: the chief has no more trials; {tuner.ran} run here", flush=True)
    return {"trials_run": float(tuner.ran)}


def main(argv: list[str]) -> int:
    """``python -m siamese.worker CONFIG TUNER_ID HOST:PORT PARENT_RUN THREADS`` (the chief's command line)."""
    install_stop_handlers()
    config, tuner_id, address, parent, threads = argv
    cfg = OmegaConf.load(config)
    cfg.tuner.workers = 0
    cfg.tuner.distributed = {**cfg.tuner.distributed, "role": "worker", "address": address, "tuner_id": tuner_id,
                             "parent_run": parent, "threads": int(threads)}
    try:
        work(cfg, Distributed.of(cfg))
    except Stopped as exc:  # its open runs ended KILLED; the chief reports the stop
        print(f"worker {tuner_id}: {exc}", flush=True)
        return exc.code
    except (UserError, TrainingFailed) as exc:
        print(f"error: {exc}", flush=True)
        return 2 if isinstance(exc, UserError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
