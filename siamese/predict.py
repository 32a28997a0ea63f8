"""Score a pair table with a trained model, in chunks, writing the rows plus ``score`` and ``prediction``.

    python -m siamese.predict model=models:/siamese-digits@champion input=pairs.csv output=scored.csv

With a label column the input's accuracy, AUC and F1 are printed (thresholds from validation).
The output is written to ``<output>.partial`` and renamed at the end: a failure leaves no file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from siamese import backend
from siamese.data import data_files, read_chunks
from siamese.errors import ConfigError
from siamese.paths import project_root, resolve

if TYPE_CHECKING:
    from siamese.bundle import ModelBundle


def score_file(bundle: "ModelBundle", source: Path, output: Path, chunk_rows: int = 100_000) -> dict[str, Any]:
    """Score ``source`` chunk by chunk into ``output`` (atomically).

    Returns:
        Row and chunk counts, and the metrics when ``source`` has the label column.
    """
    tmp = output.with_name(output.name + ".partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    label = bundle.spec.label
    labels, raws, n_rows, n_chunks = [], [], 0, 0
    try:
        with open(tmp, "w", newline="") as out:
            for chunk in read_chunks(source, chunk_rows):
                if n_chunks == 0:
                    bundle.check_columns([str(c) for c in chunk.columns], str(source))
                pairs = bundle.pairs(chunk, str(source), first_line=n_rows + 2)
                raw = bundle.raw(bundle.preprocessor.apply(pairs))
                s, pred = bundle.decide(raw)
                pd.concat([chunk, pd.DataFrame({"score": s, "prediction": pred}, index=chunk.index)], axis=1).to_csv(out, header=n_chunks == 0, index=False)
                if pairs.y is not None:
                    labels.append(pairs.y)
                    raws.append(raw)
                n_rows, n_chunks = n_rows + len(chunk), n_chunks + 1
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    result: dict[str, Any] = {"rows": n_rows, "chunks": n_chunks, "output": str(output)}
    if labels:
        y, raw = np.concatenate(labels), np.concatenate(raws)
        result["metrics"] = bundle.metrics(y, raw, "input")
    elif label:
        result["note"] = f"no '{label}' column: scores only"
    return result


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.input`` (default: the data config's test file) with ``cfg.model_uri``."""
    if int(cfg.chunk_size) < 1:
        raise ConfigError(f"chunk_size must be at least 1, got {cfg.chunk_size}")
    source = resolve(cfg.input) if cfg.input else data_files(cfg.data)[1]
    output = resolve(cfg.output) if cfg.output else project_root() / "experiments" / "predictions" / f"{source.name.split('.')[0]}.scored.csv"
    if output.suffix != ".csv":
        raise ConfigError(f"output={output}: predictions are written as CSV; name the file *.csv")
    if output.resolve() == source.resolve():
        raise ConfigError(f"output={output} would overwrite the input")
    backend.start_for(cfg)
    from siamese.registry import load_bundle  # Keras: imported once the backend is chosen

    t0 = time.perf_counter()
    bundle = load_bundle(str(cfg.model_uri), cfg.tracking)
    extra = [str(c) for c in (cfg.data.get("ignore") or [])]
    if extra:  # data.ignore on the command line: more columns of this input to drop
        bundle.columns = {**bundle.columns, "ignore": [*(bundle.columns.get("ignore") or []), *extra]}
    result = score_file(bundle, source, output, int(cfg.chunk_size))
    took = time.perf_counter() - t0
    print(f"scored {result['rows']} pairs from {source} with {cfg.model_uri} in {took:.1f}s → {output}")
    if "metrics" in result:
        m = result["metrics"]
        print(f"accuracy={m['input_accuracy']:.4f} auc={m['input_auc']:.4f} f1={m['input_f1']:.4f} "
              f"(threshold {bundle.threshold:.4g}, chosen on validation)")
    return result


if __name__ == "__main__":
    from siamese.cli import entry

    entry(predict, "predict", rename={"model": "model_uri"})()
