"""Export a model for use without MLflow or this package: ``model.keras`` + ``siamese.json``.

    python -m siamese.export model=models:/siamese-digits@champion out=DIR

``DIR/siamese_layers.py`` (a copy of :mod:`siamese.layers`, Keras only) registers the custom
layers; the README shows the five lines of plain Keras that score pairs with the three files.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig

from siamese import backend
from siamese.data.split import NORM_FLOOR
from siamese.errors import ConfigError
from siamese.paths import resolve

if TYPE_CHECKING:
    from siamese.bundle import ModelBundle

META, LAYERS = "siamese.json", "siamese_layers.py"


def meta(bundle: "ModelBundle", source: str) -> dict[str, Any]:
    """Everything needed besides the network: columns, preprocessing, score rule, thresholds.

    Preprocessing is spelled out as ``(x / max(norm, norm_floor) if l2_normalize) - mean) / scale``
    per side, so ``none`` is mean 0, scale 1, and a zero vector stays zero as in the product.
    """
    pre, d = bundle.preprocessor, bundle.dim
    mean = pre.mean if pre.mean is not None else np.zeros(d, np.float32)
    scale = pre.scale if pre.scale is not None else np.ones(d, np.float32)
    return {
        "source": source,
        "dim": d,
        "left": bundle.spec.left,
        "right": bundle.spec.right,
        "label": bundle.spec.label,
        "preprocessing": pre.kind,
        "l2_normalize": pre.kind == "l2",
        "norm_floor": NORM_FLOOR,
        "mean": [float(x) for x in mean],
        "scale": [float(x) for x in scale],
        "output": bundle.kind,
        "score_sign": -1.0 if bundle.kind == "distance" else 1.0,
        "score": "score = score_sign * model output; higher = more similar; same = score >= threshold",
        "threshold": bundle.threshold,
        "f1_threshold": bundle.f1_threshold,
        "keras_version": metadata.version("keras"),
        "backend": backend.running(),
    }


def export_bundle(bundle: "ModelBundle", out: Path, source: str) -> Path:
    """Write ``model.keras``, ``siamese.json`` and ``siamese_layers.py`` into ``out`` atomically."""
    import keras

    from siamese import layers

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # A fresh functional model over the same layers: no optimizer or custom loss to deserialise.
    keras.Model(bundle.model.inputs, bundle.model.outputs, name=bundle.model.name).save(tmp / "model.keras")
    (tmp / META).write_text(json.dumps(meta(bundle, source), indent=1))
    shutil.copyfile(layers.__file__, tmp / LAYERS)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def export(cfg: DictConfig) -> Path:
    """Export ``cfg.model_uri`` to ``cfg.out``."""
    if not cfg.out:
        raise ConfigError("out= is required: the folder to write the exported model into")
    out = resolve(cfg.out)
    if out.exists() and any(out.iterdir()) and not (out / META).exists():
        raise ConfigError(f"out={out} is a non-empty folder that is not an export; pick another")
    backend.start_for(cfg)
    from siamese.registry import load_bundle  # Keras: imported once the backend is chosen

    path = export_bundle(load_bundle(str(cfg.model_uri), cfg.tracking), out, str(cfg.model_uri))
    print(f"exported {cfg.model_uri} → {path} (model.keras, {META}, {LAYERS})")
    return path


if __name__ == "__main__":
    from siamese.cli import entry

    entry(export, "export", rename={"model": "model_uri"})()
