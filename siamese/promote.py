"""Promote a study's best model to the MLflow Model Registry.

    python -m siamese.promote [data=…] [study=…] [--dry-run | promote.force=true]

The best run is chosen by the study's objective on validation. Its test metric is computed here,
on the data config's test file, and compared with the current champion's on the same file: the
new version takes the alias ``champion`` only if it is at least as good, else ``challenger``.
"""

from __future__ import annotations

from siamese import backend  # noqa: F401  (TensorFlow's start-up, quietly, before Keras loads)

from dataclasses import asdict, dataclass, field
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from siamese import tracking
from siamese.bundle import ModelBundle
from siamese.data import PairSet, TableFormat, data_files, file_sha256, read_pairs
from siamese.errors import ConfigError, TrackingError
from siamese.registry import load_bundle, log_pyfunc

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass
class Plan:
    """What a promotion does (or, in a dry run, would do)."""

    model_name: str
    study: str
    source_run_id: str
    objective: str
    val_value: float
    metric: str
    test_metrics: dict[str, float]
    champion_version: str | None
    champion_value: float | None
    alias: str
    reason: str
    version: str | None = None
    test_file: str = ""
    test_sha256: str = ""
    notes: list[str] = field(default_factory=list)


def best_trial(parent: mlflow.entities.Run) -> tuple[dict[str, Any], str]:
    """The study's best finished trial by its validation objective, and where its model is.

    Ties go to the trial the study itself kept as best (the parent's ``best_trial_run_id``).

    Returns:
        The trial's row (run id, metrics, params) and the model's artifact URI.
    """
    tags = parent.data.tags
    objective, direction = tags["objective"], tags.get("direction", "max")
    frame = tracking.children(parent.info.run_id)
    col = f"metrics.{objective}"
    if frame.empty or col not in frame.columns:
        raise TrackingError(f"study '{tags.get('study')}' has no finished trials with {objective}")
    trials = frame[(frame["tags.kind"] == "trial") & (frame["status"] == "FINISHED") & frame[col].notna()].copy()
    if trials.empty:
        raise TrackingError(f"study '{tags.get('study')}' has no finished trials with {objective}")
    trials["_kept"] = trials["run_id"] == tags.get("best_trial_run_id")
    trials = trials.sort_values([col, "_kept"], ascending=[direction != "max", False])
    row = trials.iloc[0].to_dict()
    run_id = row["run_id"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    if "model" in artifacts:
        return row, f"runs:/{run_id}/model"
    if run_id == tags.get("best_trial_run_id"):
        return row, f"runs:/{parent.info.run_id}/model"
    raise TrackingError(f"the best trial {run_id} has no saved model (the study's kept model is another "
                        "trial's); rerun the study with log_trial_models=true")


def _champion_value(client: MlflowClient, name: str, metric: str, test: PairSet) -> tuple[str | None, float | None, str]:
    """The current champion's version and its ``metric`` on this test file (scored now)."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None, None, f"no {CHAMPION} yet for {name}"
    try:
        value = load_bundle(f"models:/{name}@{CHAMPION}").evaluate(test)[metric]
    except Exception as exc:  # a champion that cannot score this file cannot defend its place
        return version.version, None, f"{CHAMPION} v{version.version} cannot score this test file ({type(exc).__name__}: {exc})"
    return version.version, value, ""


def plan(cfg: DictConfig, tracker: tracking.Tracker) -> tuple[Plan, ModelBundle, mlflow.entities.Run]:
    """Work out the promotion without changing anything."""
    parent = tracker.find_study(cfg.study)
    tags = parent.data.tags
    objective = tags["objective"]
    row, uri = best_trial(parent)
    bundle = load_bundle(uri)
    _, test_path = data_files(cfg.data)
    # By the model's column names, as the study read its own test file.
    test, _ = read_pairs(test_path, cfg.data.label, expect=bundle.spec, ignore=list(cfg.data.get("ignore") or []),
                         fmt=TableFormat(cfg.data.get("sep"), cfg.data.get("decimal")))
    test_metrics = bundle.evaluate(test)
    metric = str(cfg.promote.metric or "test_" + objective.removeprefix("val_"))
    if metric not in test_metrics:
        raise ConfigError(f"promote.metric={metric!r} is not one of {sorted(test_metrics)}")
    name = str(cfg.promote.model_name)
    version, champ, why = _champion_value(MlflowClient(), name, metric, test)
    new = test_metrics[metric]
    if champ is None:
        alias, reason = CHAMPION, why
    elif new >= champ:
        alias, reason = CHAMPION, f"{metric} {new:.4f} ≥ {CHAMPION} v{version}'s {champ:.4f} on the same test file"
    elif cfg.promote.force:
        alias, reason = CHAMPION, f"forced: {metric} {new:.4f} < {CHAMPION} v{version}'s {champ:.4f}"
    else:
        alias, reason = CHALLENGER, f"{metric} {new:.4f} < {CHAMPION} v{version}'s {champ:.4f} on the same test file"
    digest = file_sha256(test_path)
    notes = []
    if tags.get("data_test_sha256") and tags["data_test_sha256"] != digest:
        notes.append(f"the study recorded another test file ({tags.get('data_test_file')}); scored {test_path}")
    p = Plan(name, tags.get("study", ""), row["run_id"], objective, float(row[f"metrics.{objective}"]), metric,
             test_metrics, version, champ, alias, reason, test_file=str(test_path), test_sha256=digest, notes=notes)
    return p, bundle, parent


def _describe(p: Plan) -> str:
    champ = "none" if p.champion_version is None else (
        f"v{p.champion_version} ({p.metric}={p.champion_value:.4f})" if p.champion_value is not None else f"v{p.champion_version}")
    lines = [f"study {p.study}: best trial run {p.source_run_id} ({p.objective}={p.val_value:.4f}, chosen on validation)",
             f"test file {p.test_file}: " + " ".join(f"{k}={v:.4f}" for k, v in p.test_metrics.items()),
             f"current {CHAMPION}: {champ}",
             f"→ {p.model_name}: alias {p.alias} ({p.reason})", *(f"note: {n}" for n in p.notes)]
    return "\n".join(lines)


def register(p: Plan, bundle: ModelBundle, parent: mlflow.entities.Run, tracker: tracking.Tracker) -> str:
    """Log the pyfunc in a promotion run, register it, describe it, set the alias.

    A failure after the version exists deletes it, so the registry never holds a half-described
    version, and the promotion run ends FAILED.

    Returns:
        The new version number.
    """
    client = MlflowClient()
    source = client.get_run(p.source_run_id)
    trial_config = mlflow.artifacts.load_text(f"runs:/{p.source_run_id}/config.yaml")
    val_metrics = {k: v for k, v in source.data.metrics.items() if k.startswith("val_") and not k.endswith("_epoch")}
    ptags = parent.data.tags
    tags = {"source_run_id": p.source_run_id, "study": p.study, "study_run_id": parent.info.run_id,
            "objective": p.objective, "promotion": f"{p.alias}: {p.reason}", "test_file": p.test_file,
            "data_test_sha256": p.test_sha256, "data_train_sha256": ptags.get("data_train_sha256", ""),
            "git_commit": ptags.get("git_commit", ""), "seed": source.data.tags.get("seed", ptags.get("seed", "")),
            **{k: f"{v:.6f}" for k, v in {**val_metrics, **p.test_metrics}.items()}}
    description = "\n".join([
        f"Best trial of study `{p.study}` (run `{p.source_run_id}`), chosen by {p.objective} on validation; "
        f"test metrics computed at promotion on `{p.test_file}` (sha256 {p.test_sha256[:16]}…).", "",
        "| metric | value |", "|---|---|", *(f"| {k} | {v:.4f} |" for k, v in {**val_metrics, **p.test_metrics}.items()), "",
        f"Alias: {p.alias} ({p.reason}).", "", "Resolved config:", "```yaml", trial_config.rstrip(), "```"])
    with tracker.run(f"promote-{p.study}",
                     tags={"kind": "promotion", "study": p.study, "source_run_id": p.source_run_id}):
        mlflow.log_metrics(p.test_metrics)
        mlflow.log_text(trial_config, "config.yaml")
        info = log_pyfunc(bundle)
        version = mlflow.register_model(info.model_uri, p.model_name, tags=tags).version
        try:
            client.update_model_version(p.model_name, version, description=description)
            client.set_registered_model_alias(p.model_name, p.alias, version)
        except BaseException:
            client.delete_model_version(p.model_name, version)
            raise
        mlflow.set_tags({"registered_model": p.model_name, "registered_version": str(version), "alias": p.alias})
    return str(version)


def promote(cfg: DictConfig) -> dict[str, Any]:
    """Register the best model of the study ``cfg`` names; ``promote.dry_run`` only prints the plan.

    Returns:
        The plan as a dict (with ``version`` set unless a dry run).
    """
    tracker = tracking.Tracker(cfg.tracking)
    p, bundle, parent = plan(cfg, tracker)
    print(_describe(p))
    if cfg.promote.dry_run:
        print("dry run: nothing changed")
    else:
        p.version = register(p, bundle, parent, tracker)
        print(f"registered {p.model_name} version {p.version} with alias {p.alias}")
    return asdict(p)


if __name__ == "__main__":
    from siamese.cli import entry

    entry(promote, "promote", flags={"--dry-run": "promote.dry_run=true"})()
