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


def log_pyfunc(bundle: ModelBundle, name: str = "model", model_id: str | None = None) -> mlflow.models.model.ModelInfo:
    """Log ``bundle`` as a pyfunc model in the active run (into the logged model ``model_id``, if given)."""
    with tracking.scratch_dir() as tmp:
        folder = bundle.save(Path(tmp) / ARTIFACT)
        example = pd.DataFrame(np.zeros((1, 2 * bundle.dim)), columns=bundle.spec.features)
        return mlflow.pyfunc.log_model(
            name=name, python_model=str(Path(__file__).with_name("pyfunc_entry.py")), artifacts={ARTIFACT: str(folder)},
            signature=signature(bundle), input_example=example, pip_requirements=requirements(), model_id=model_id)


def _bundle_folder(local: Path, uri: str) -> Path:
    """Where a model folder keeps its siamese bundle, read from files only: nothing in it runs.

    A bundle folder (``bundle.json`` + ``model.keras``) is itself; an MLflow model is ours when
    its ``MLmodel`` names a ``bundle`` artifact of the python_function flavor holding a bundle.

    Raises:
        UserError: the folder is not a model, or an MLflow model that siamese did not log.
    """
    import yaml

    if (local / META_FILE).exists():
        return local
    if not (local / "MLmodel").exists():
        raise DataError(f"{uri}: holds neither a siamese model ({META_FILE}) nor an MLflow model (MLmodel)")
    try:
        flavor = (yaml.safe_load((local / "MLmodel").read_text()) or {}).get("flavors", {}).get("python_function") or {}
        bundle = local / str(((flavor.get("artifacts") or {}).get(ARTIFACT) or {}).get("path", ""))
    except (yaml.YAMLError, OSError, AttributeError) as exc:
        raise UserError(f"{uri}: its MLmodel file cannot be read ({type(exc).__name__}); not a siamese model") from None
    if bundle == local or not (bundle / META_FILE).is_file():
        raise UserError(f"{uri} is an MLflow model, but not one logged by siamese (no '{ARTIFACT}' artifact with "
                        f"{META_FILE}); refused without loading it, since loading runs the model's own code")
    return bundle


def _load_checked(folder: Path, uri: str) -> ModelBundle:
    """:meth:`ModelBundle.load` (Keras safe mode), its failures as one line naming the model."""
    try:
        return ModelBundle.load(folder)
    except Exception as exc:  # a damaged or foreign bundle: JSON, keys, or Keras refusing it
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(f"{uri}: not a loadable siamese model ({type(exc).__name__}: {first})") from None


def load_bundle(uri: str, tracking_cfg: Any = None) -> ModelBundle:
    """A bundle from a pyfunc model (``models:/name@alias``, ``runs:/id/model``, a folder) or from a
    saved bundle folder (a study's or training run's ``model`` artifact, local or ``runs:/``).

    The model's files are read, never its code run: ``MLmodel`` and ``bundle.json`` first, then
    the Keras model in safe mode (see :func:`_bundle_folder`).

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
        except (mlflow.exceptions.MlflowException, OSError) as exc:
            first = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]
            raise UserError(f"cannot load model {uri}: {first}{_alias_hint(uri)}") from None
        return _load_checked(_bundle_folder(local, uri), uri)


def _alias_hint(uri: str) -> str:
    """For ``models:/name@alias`` whose alias is not set: the aliases the model has, and the fix
    (a study that does not beat its best baseline is promoted as ``challenger``, not ``champion``)."""
    if not uri.startswith("models:/") or "@" not in uri:
        return ""
    name = uri[len("models:/"):].split("@", 1)[0]
    try:
        aliases = mlflow.MlflowClient().get_registered_model(name).aliases
    except mlflow.exceptions.MlflowException:
        return ""
    if not aliases:
        return f"; {name} has no aliases yet: promote a study first (make promote)"
    have = ", ".join(f"@{a} (v{v})" for a, v in sorted(aliases.items()))
    return (f"; {name} has {have}: use one of those, e.g. model=models:/{name}@{sorted(aliases)[0]}, "
            "or promote.force=true to make a version champion")


def main() -> None:
    """``python -m siamese.registry URI``: check that URI is a siamese model before serving it (exit 2 if not)."""
    import sys

    try:
        bundle = load_bundle(sys.argv[1])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"{sys.argv[1]}: a siamese model ({bundle.kind} head, {bundle.dim} a side)")


if __name__ == "__main__":
    main()
