"""MLflow "model from code" entry: logging and loading run this file instead of unpickling an object."""

import mlflow

from siamese import backend

# `mlflow models serve` loads this file: Keras runs on KERAS_BACKEND (default tensorflow).
backend.start(backend.running())

from siamese.registry import SiameseModel  # noqa: E402  (after the backend is chosen)

mlflow.models.set_model(SiameseModel())
