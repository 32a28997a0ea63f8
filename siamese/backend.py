"""Keras' backend start-up, done once where a task that trains or loads a model starts.

Importing this module imports TensorFlow with its C++ start-up lines (oneDNN, CUDA stubs) muted:
they are written before any log level applies and would bury the one-line errors this tool prints.
``SIAMESE_TF_VERBOSE=1`` keeps them. Tasks that need no model (``siamese.report``, the figure
worker) never import it, so they start without TensorFlow.
"""

from __future__ import annotations

import os


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with stderr muted at the file-descriptor level.

    Import errors still surface: Python raises them after stderr is restored.
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


_import_tensorflow_quietly()
