"""Keras' backend (``backend=tensorflow|jax``), chosen where a task starts, before Keras loads.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so the tasks that train or load a
model call :func:`start` with their config's ``backend`` first and import the modules that use
Keras after it. Tasks that need no model (``siamese.report``, the figure worker) never call it,
so they start without TensorFlow or JAX.

TensorFlow's C++ start-up lines (oneDNN, CUDA stubs) are written before any log level applies and
would bury the one-line errors this tool prints, so the import runs with stderr muted
(``SIAMESE_TF_VERBOSE=1`` keeps them).

On JAX every new model is compiled by XLA in its first epoch (about 2 s here for the question's
model: most of a 5-epoch run). The ``compilation_cache`` key keeps compiled steps on disk (JAX's
persistent compilation cache), so a model whose shapes were compiled before (another trial of the
same architecture, a confirmation seed, a resumed study, the next ``make train``) skips it.
The cached program is the same program, so results do not change (benchmarks/README.md, speed table).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from siamese.errors import ConfigError
from siamese.paths import resolve

BACKENDS = ("tensorflow", "jax")
# JAX caches only programs that took at least this long to compile (its default, 1 s, would miss the
# question's model on a faster machine; below ~0.1 s reading the entry costs about what compiling does).
MIN_COMPILE_SECONDS = 0.1
# XLA's CPU client runs one Eigen pool sized to the machine; these flags make it one thread.
ONE_XLA_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


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


def _compilation_cache(folder: Any) -> Path:
    """The folder for JAX's persistent compilation cache: created, and checked to be writable (JAX
    would only warn on every write). Relative paths are taken against where the command runs, as
    every path on the command line is.

    Raises:
        ConfigError: not a path (a number, ``true``, an empty string), or a folder that cannot be
            created or written.
    """
    if isinstance(folder, bool) or not isinstance(folder, (str, os.PathLike)) or not str(folder).strip():
        shown = str(folder).lower() if isinstance(folder, bool) else repr(folder)  # as the command line writes it
        raise ConfigError(f"compilation_cache={shown}: give a folder path (e.g. .cache/jax), "
                          "or compilation_cache=null to turn the cache off")
    path = resolve(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        raise ConfigError(f"compilation_cache={folder}: cannot write to the folder ({e.strerror or e}); "
                          "give a writable folder, or compilation_cache=null to turn the cache off") from None
    return path


def start(name: str, compilation_cache: str | os.PathLike | None = None) -> str:
    """Run Keras on ``name`` in this process (idempotent).

    Args:
        name: ``tensorflow`` or ``jax`` (a task's ``backend`` config key).
        compilation_cache: a folder for JAX's compiled programs (the ``compilation_cache`` key), or
            ``None``: no cache (even if ``JAX_COMPILATION_CACHE_DIR`` is set). Ignored on TensorFlow,
            and once Keras runs in this process.

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
    cache = _compilation_cache(compilation_cache) if name == "jax" and compilation_cache is not None else None
    os.environ["KERAS_BACKEND"] = name
    _import_quietly(name)
    if name == "jax":
        import jax

        # Set in this process only (workers start their own); JAX opens the cache at its first compile.
        jax.config.update("jax_enable_compilation_cache", cache is not None)
        if cache is not None:
            jax.config.update("jax_compilation_cache_dir", str(cache))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return name


def start_for(cfg: Any) -> str:
    """:func:`start` with a task config's ``backend`` and ``compilation_cache`` keys.

    Raises:
        ConfigError: as :func:`start`.
    """
    return start(cfg.backend, cfg.get("compilation_cache"))


def running() -> str:
    """The backend Keras runs on in this process (or would, from ``KERAS_BACKEND``)."""
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else os.environ.get("KERAS_BACKEND", "tensorflow")
