"""Keras' backend (``backend=tensorflow|jax``), chosen where a task starts, before Keras loads.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so the tasks that train or load a
model call :func:`start` with their config's ``backend`` first and import the modules that use
Keras after it. Tasks that need no model (``siamese.report``, the figure worker) never call it,
so they start without TensorFlow or JAX.

TensorFlow's C++ start-up lines (oneDNN, CUDA stubs) are written before any log level applies and
would bury the one-line errors this tool prints, so the import runs with stderr muted
(``SIAMESE_TF_VERBOSE=1`` keeps them).
"""

from __future__ import annotations

import logging
import os
import sys

from siamese.errors import ConfigError

BACKENDS = ("tensorflow", "jax")


def _import_quietly(name: str) -> None:
    """Import the backend and Keras with stderr muted at the file-descriptor level.

    Import errors still surface: Python raises them after stderr is restored.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("SIAMESE_TF_VERBOSE"):
        import keras  # noqa: F401
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            # On JAX too: keras.utils.set_random_seed imports TensorFlow when it is installed
            # (to seed tf.random), so it is imported here, muted, rather than noisily mid-run.
            import tensorflow as tf

            # Retracing notices between trials are expected: each trial is a new model.
            tf.get_logger().setLevel("ERROR")
            if name == "jax":
                # "Unable to initialize backend 'tpu'" at INFO, which Hydra's logging would print.
                logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
            import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def start(name: str) -> str:
    """Run Keras on ``name`` in this process (idempotent).

    Args:
        name: ``tensorflow`` or ``jax`` (a task's ``backend`` config key).

    Returns:
        The backend Keras runs on.

    Raises:
        ConfigError: an unknown backend, or Keras already running on another one in this process
            (a process has one backend; start another process, or set ``KERAS_BACKEND``).
    """
    if name not in BACKENDS:
        raise ConfigError(f"backend={name!r} is not one of {list(BACKENDS)}")
    keras = sys.modules.get("keras")
    if keras is not None:
        running = keras.backend.backend()
        if running != name:
            raise ConfigError(f"backend={name}: Keras already runs on {running} in this process "
                              f"(one backend a process; start a new one, e.g. with KERAS_BACKEND={name})")
        return running
    os.environ["KERAS_BACKEND"] = name
    _import_quietly(name)
    return name


def running() -> str:
    """The backend Keras runs on in this process (or would, from ``KERAS_BACKEND``)."""
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else os.environ.get("KERAS_BACKEND", "tensorflow")
