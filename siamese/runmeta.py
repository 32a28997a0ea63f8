"""What a user sees of a run in the MLflow UI: its name, its params, and where to find it.

- Names are unique and say what the run is: ``<study>/trial-07``, ``<study>/baseline-cosine``, a
  training run by its key overrides (``distance=l2 loss=contrastive-3f9a1c``) or its data set and
  run id. MLflow's own generated names come from Python's ``random``, which a seeded task resets:
  every run of a Hydra multirun would get the same one.
- A study's parent run holds the study's settings and the winner's values (``best.*``) as params;
  the search space is one artifact, ``search_space.yaml``, not a hundred flattened params.
- Every task prints its run id and the URL of its run in ``make ui`` (``tracking.ui_url``).
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from siamese.overrides import command_line

# Short names of the keys a space usually holds; any other key is shown by its last component.
SHORT = {"model.distance": "dist", "loss.name": "loss", "model.dropout": "drop", "optimizer.name": "opt",
         "optimizer.learning_rate": "lr", "model.output_activation": "out", "training.batch_size": "bs",
         "data.preprocess": "pre"}
SPACE_FILE = "search_space.yaml"
# MLflow 3.17's UI picks its view per browser (GenAI by default, whatever the experiment's kind
# tag says); this query opens the model-training view: runs table, runs' pages, models.
ML_VIEW = "workflowType=machine_learning"
# Study-level keys shown on the parent beside the fixed settings (resume.fixed_settings).
STUDY_KEYS = ("study", "search.name", "search.objective", "search.direction", "tuner.name", "tuner.max_trials",
              "tuner.executions_per_trial", "seed", "data.name", "baselines", "confirm.top_k", "confirm.seeds")


def _plain(value: Any) -> Any:
    """A param value as MLflow shows it best: numbers as plain numbers (``0.001``, ``128``), numpy
    scalars as Python ones."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    return value


def study_params(cfg: DictConfig, fixed: dict[str, str]) -> dict[str, Any]:
    """The parent's params: the study's own keys, then ``fixed`` (what every trial shares)."""
    out: dict[str, Any] = {}
    for key in STUDY_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            out[key] = _plain(value)
    return {**out, **{k: v for k, v in fixed.items() if k not in out}}


def log_study_start(cfg: DictConfig, fixed: dict[str, str]) -> None:
    """A new study's parent: its params, ``config.yaml`` (the whole config) and ``search_space.yaml``."""
    mlflow.log_params({k: str(v)[:6000] for k, v in study_params(cfg, fixed).items()})
    mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    mlflow.log_text(OmegaConf.to_yaml(cfg.search, resolve=True), SPACE_FILE)


def log_winner(values: dict[str, Any], trial_id: str) -> None:
    """The winner's values as ``best.<key>`` params of the active (parent) run.

    MLflow never changes a logged param: when a resumed study's winner differs from the one its
    params already hold, they stay, and the tag ``best_params_from_trial`` says whose they are
    (the ``best.*`` tags and ``best_params.json`` always hold the current winner).
    """
    run = mlflow.active_run()
    held = MlflowClient().get_run(run.info.run_id).data.params
    new = {f"best.{k}": str(_plain(v)) for k, v in values.items()}
    if any(held.get(k, v) != v for k, v in new.items()):
        return  # the tag set by the first winner stays true of the params
    mlflow.log_params({k: v for k, v in new.items() if k not in held})
    mlflow.set_tag("best_params_from_trial", trial_id)


def log_trial_params(trial_id: str, values: dict[str, Any]) -> None:
    """A trial's searched values as params, numbers as numbers (``128``, not ``'128'`` quoted)."""
    mlflow.log_params({"trial_id": trial_id, **{k: str(_plain(v)) for k, v in values.items()}})


IGNORED = ("tracking.", "hydra.", "run_name", "backend", "compilation_cache", "data.cache_dir", "training.verbose")


def train_name(cfg: DictConfig, run_id: str, overrides: list[str] | None = None) -> str:
    """A training run's name: ``run_name`` if set, else its key overrides in short (``dist=l2
    loss=contrastive``) or its data set, then the run id's first 6 characters."""
    if cfg.get("run_name"):
        return str(cfg.run_name)
    parts = []
    for item in command_line() if overrides is None else overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if not key.startswith(IGNORED):
            parts.append(f"{SHORT.get(key, key.split('.')[-1])}={value.split('/')[-1]}")
    label = " ".join(parts)[:60] or str(OmegaConf.select(cfg, "data.name", default="run"))
    return f"{label}-{run_id[:6]}"


def ui_url(cfg: Any, run: mlflow.entities.Run | None = None) -> str:
    """The run's page in the MLflow UI: ``tracking.ui_url`` (``make ui``) or the tracking server."""
    uri = str(cfg.uri)
    base = uri if uri.startswith(("http://", "https://")) else str(cfg.get("ui_url") or "http://127.0.0.1:5000")
    run = run or mlflow.active_run()
    return f"{base.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?{ML_VIEW}"


def announce(cfg: Any, what: str, run: mlflow.entities.Run | None = None) -> None:
    """Print ``<what> run <id>: <url>`` for the active run (or ``run``)."""
    run = run or mlflow.active_run()
    print(f"{what} run {run.info.run_id}: {ui_url(cfg, run)}", flush=True)


def main() -> None:
    """``python -m siamese.runmeta STORE_URI UI_BASE``: each experiment's runs table in the UI, one a line
    (``make ui`` prints them: clicking through MLflow's experiment list falls back to its GenAI view)."""
    import sys

    uri, base = sys.argv[1], sys.argv[2].rstrip("/")
    for exp in MlflowClient(uri).search_experiments():
        if exp.name != "Default" or exp.experiment_id != "0":
            print(f"{exp.name}: {base}/#/experiments/{exp.experiment_id}?{ML_VIEW}")


if __name__ == "__main__":
    main()
