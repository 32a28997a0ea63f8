"""Siamese networks on vector pairs, with tracked hyperparameter studies."""

import os

from siamese.paths import register_resolvers


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with stderr muted at the file-descriptor level.

    TensorFlow's C++ start-up lines (oneDNN, CUDA stubs) are written before any log level
    applies, and would bury the one-line errors this tool prints. ``SIAMESE_TF_VERBOSE=1``
    keeps them. Import errors still surface: Python raises them after stderr is restored.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("SIAMESE_TF_VERBOSE"):
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow as tf

            # Retracing notices between trials are expected: each trial is a new model.
            tf.get_logger().setLevel("ERROR")
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# Set in the environment of the figure worker (siamese.figures), which never needs TensorFlow.
FIGURES_WORKER_ENV = "SIAMESE_FIGURES_WORKER"

if not os.environ.get(FIGURES_WORKER_ENV):
    _import_tensorflow_quietly()
register_resolvers()

__version__ = "0.1.0"
