"""The MLflow side of a trained model: a pyfunc carrying a :class:`ModelBundle`, and loading one back.

The pyfunc holds the Keras model, the preprocessing fit on train and the thresholds chosen on
validation, so ``mlflow models serve`` and ``python -m siamese.predict`` give the same scores.
It needs this package installed where it runs (``mlflow models serve --env-manager local`` from
the project's ``.venv``); ``python -m siamese.export`` is for places without it.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from siamese import backend, tracking
from siamese.bundle import META_FILE, ModelBundle
from siamese.errors import DataError, UserError

ARTIFACT = "bundle"


class SiameseModel(mlflow.pyfunc.PythonModel):
    """pyfunc: a frame of pairs (the training file's columns) → ``score`` and ``prediction``."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.bundle = ModelBundle.load(context.artifacts[ARTIFACT])

    # A DataFrame hint is one MLflow takes without inferring a schema: the signature validates.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        # MLflow's schema check runs first: a missing or non-numeric column is refused there and
        # columns outside the signature are dropped. NaN passes it; frame_scores refuses it.
        return self.bundle.frame_scores(pd.DataFrame(model_input), "request", first_line=1)


def signature(bundle: ModelBundle) -> ModelSignature:
    """Input: the 2d feature columns as doubles; output: ``score`` (double), ``prediction`` (long)."""
    inputs = Schema([ColSpec("double", name) for name in bundle.spec.features])
    outputs = Schema([ColSpec("double", "score"), ColSpec("long", "prediction")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def requirements() -> list[str]:
    """Pinned to what trained the model, on the backend it ran on; pip inference would be slow and guess."""
    names = ["tensorflow", "keras", "mlflow", "pandas", "numpy", "scikit-learn"]
    if backend.running() == "jax":
        names += ["jax", "jaxlib"]
    return [f"{name}=={metadata.version(name)}" for name in names]


def log_pyfunc(bundle: ModelBundle, name: str = "model") -> mlflow.models.model.ModelInfo:
    """Log ``bundle`` as a pyfunc model in the active run."""
    with tracking.scratch_dir() as tmp:
        folder = bundle.save(Path(tmp) / ARTIFACT)
        example = pd.DataFrame(np.zeros((1, 2 * bundle.dim)), columns=bundle.spec.features)
        return mlflow.pyfunc.log_model(
            name=name, python_model=str(Path(__file__).with_name("pyfunc_entry.py")), artifacts={ARTIFACT: str(folder)},
            signature=signature(bundle), input_example=example, pip_requirements=requirements())


def load_bundle(uri: str, tracking_cfg: Any = None) -> ModelBundle:
    """A bundle from a pyfunc model (``models:/name@alias``, ``runs:/id/model``, a folder) or from a
    saved bundle folder (a study's or training run's ``model`` artifact, local or ``runs:/``).

    Args:
        uri: where the model is.
        tracking_cfg: a ``tracking`` config to point MLflow at first, for ``models:/`` and
            ``runs:/`` URIs (None: MLflow is already configured, or the URI is a folder).

    Raises:
        UserError: the model cannot be found or is not a siamese model.
    """
    if tracking_cfg is not None and uri.startswith(("models:/", "runs:/")):
        tracking.Tracker(tracking_cfg)
    with tracking.scratch_dir() as tmp:
        try:
            local = Path(uri).expanduser()
            if not local.exists():
                local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))
            if (local / META_FILE).exists():
                return ModelBundle.load(local)
            if not (local / "MLmodel").exists():
                raise DataError(f"{uri}: holds neither a siamese model ({META_FILE}) nor an MLflow model (MLmodel)")
            inner = mlflow.pyfunc.load_model(str(local)).unwrap_python_model()
        except (mlflow.exceptions.MlflowException, OSError) as exc:
            first = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]
            raise UserError(f"cannot load model {uri}: {first}") from None
    if not isinstance(inner, SiameseModel):
        raise UserError(f"{uri} is an MLflow model, but not one logged by siamese")
    return inner.bundle
