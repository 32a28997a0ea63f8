"""Train one Siamese model from a config, evaluate it honestly, and record it in MLflow.

    python -m siamese.train [overrides]        # one run
    python -m siamese.train -m a=1,2 b=x,y     # one run per combination, same store
"""

from __future__ import annotations

import mlflow
from omegaconf import DictConfig

from siamese import backend, runmeta, tracking


def train(cfg: DictConfig) -> dict[str, float]:
    """Train one model from ``cfg`` and record it as one MLflow run.

    Returns:
        Final validation and test metrics (test uses thresholds chosen on validation), plus
        ``train_seconds`` and ``epochs_run``.

    Raises:
        UserError: bad config, data or tracking store, before any run is opened.
        engine.Diverged: the loss became NaN or infinite (the run ends FAILED; the CLI says why in
            one line and exits 1).
    """
    backend.start_for(cfg)
    from siamese import engine  # Keras: imported once the backend is chosen

    spec, tracker, data = engine.prepare(cfg)
    tags = tracking.reproducibility_tags(spec.seed, data.hashes, data.files)
    with tracker.run(cfg.get("run_name"), tags={**tags, "kind": "train"}) as run:
        # MLflow's generated names come from `random`, which the seed resets: a multirun repeats them.
        mlflow.set_tag("mlflow.runName", runmeta.train_name(cfg, run.info.run_id))
        runmeta.announce(cfg.tracking, "train")
        tracking.log_config(cfg)
        engine.log_data(data)
        result = engine.train_and_record(spec, data, with_test=True, log_model=bool(cfg.tracking.log_model))
    print(engine.describe(result.metrics))
    return result.metrics


if __name__ == "__main__":
    from siamese.cli import entry

    entry(train, "train")()
