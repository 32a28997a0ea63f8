"""MLflow "model from code" entry: logging and loading run this file instead of unpickling an object."""

import mlflow

from siamese.registry import SiameseModel

mlflow.models.set_model(SiameseModel())
