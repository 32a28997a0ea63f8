"""A trained model with everything needed to score new pairs: preprocessing, head kind, thresholds.

Saved as a folder (``model.keras`` + ``bundle.json``), written to a temporary sibling and renamed,
so a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from siamese.data import ColumnSpec, PairSet, Preprocessor, check_columns, frame_to_pairs
from siamese.metrics import evaluate
from siamese.model import outputs, scores

MODEL_FILE, META_FILE = "model.keras", "bundle.json"


@dataclass
class ModelBundle:
    """A Keras model plus how to feed it and read its output."""

    model: keras.Model
    preprocessor: Preprocessor
    kind: str
    threshold: float
    f1_threshold: float
    columns: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Width of one side."""
        return int(self.model.inputs[0].shape[-1])

    def raw(self, pairs: PairSet) -> np.ndarray:
        """Model output on already-preprocessed pairs."""
        return outputs(self.model, pairs.left, pairs.right)

    def score(self, pairs: PairSet, preprocessed: bool = False) -> np.ndarray:
        """Similarity scores (higher = more similar) for raw or preprocessed pairs."""
        pairs = pairs if preprocessed else self.preprocessor.apply(pairs)
        return scores(self.raw(pairs), self.kind)

    def decide(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model outputs → scores and 0/1 predictions at the validation-chosen threshold."""
        s = scores(raw, self.kind)
        return s, (s >= self.threshold).astype(np.int64)

    def predict(self, pairs: PairSet) -> tuple[np.ndarray, np.ndarray]:
        """Scores and 0/1 predictions for raw pairs."""
        return self.decide(self.raw(self.preprocessor.apply(pairs)))

    @property
    def spec(self) -> ColumnSpec:
        """The training file's columns (``v0 … v{2d-1}`` and ``class`` by default)."""
        c = self.columns
        return ColumnSpec(c["label"] or "class", list(c["left"]), list(c["right"]), list(c.get("ignore") or []))

    def check_columns(self, names: list[str], source: str) -> list[str]:
        """A table must have the model's feature columns by name (any order; label optional).

        Returns:
            The columns that are not read: saved index columns and the training's ``data.ignore``.

        Raises:
            DataError: a missing or extra column, naming them.
        """
        return check_columns(names, self.spec, source, labelled=False, what="the model")

    def pairs(self, frame: pd.DataFrame, source: str = "input", first_line: int = 2) -> PairSet:
        """Validated raw pairs from a frame in the training file's format (label optional)."""
        return frame_to_pairs(frame, self.spec, source, first_line, labelled=False)

    def frame_scores(self, frame: pd.DataFrame, source: str = "input", first_line: int = 2) -> pd.DataFrame:
        """``score`` and ``prediction`` columns for a frame of pairs."""
        s, pred = self.predict(self.pairs(frame, source, first_line))
        return pd.DataFrame({"score": s, "prediction": pred}, index=frame.index)

    def metrics(self, y: np.ndarray, raw: np.ndarray, prefix: str) -> dict[str, float]:
        """Metrics of model outputs ``raw`` against labels at this bundle's validation-chosen
        thresholds (a distance head also gets the question's fixed 0.5 rule)."""
        return evaluate(y, scores(raw, self.kind), prefix, self.threshold, self.f1_threshold,
                        raw if self.kind == "distance" else None)

    def evaluate(self, pairs: PairSet, prefix: str = "test") -> dict[str, float]:
        """Metrics on labelled raw pairs at this bundle's validation-chosen thresholds."""
        return self.metrics(pairs.y, self.raw(self.preprocessor.apply(pairs)), prefix)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write atomically to ``folder`` (replacing it)."""
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.model.save(tmp / MODEL_FILE)
        meta = {
            "kind": self.kind,
            "threshold": self.threshold,
            "f1_threshold": self.f1_threshold,
            "dim": self.dim,
            "columns": self.columns,
            "preprocessing": self.preprocessor.to_dict(),
            "score": "higher = more similar" + ("; score = -distance" if self.kind == "distance" else ""),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "ModelBundle":
        """Load in Keras safe mode (no unsafe deserialisation)."""
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text())
        model = keras.models.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
        return cls(
            model=model,
            preprocessor=Preprocessor.from_dict(meta["preprocessing"]),
            kind=meta["kind"],
            threshold=float(meta["threshold"]),
            f1_threshold=float(meta["f1_threshold"]),
            columns=meta.get("columns", {}),
        )
