"""Promote a study's best model to the MLflow Model Registry.

    python -m siamese.promote [data=…] [study=…] [--dry-run | promote.force=true]

The best run is chosen by the study's objective on validation (a confirmed study's winner: the
best seed of the configuration with the best mean over fresh seeds). Its margin over the study's
best baseline on validation is stated; a model that does not beat that baseline never takes
``champion`` (it takes ``challenger``, with the reason) unless ``promote.force=true``. Its test
metric is computed here, on the data config's test file, and compared with the current champion's
on the same file: the new version takes ``champion`` only if it is at least as good.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from siamese import backend, runmeta, tracking
from siamese.data import PairSet, TableFormat, data_files, file_sha256, read_pairs
from siamese.errors import ConfigError, TrackingError

if TYPE_CHECKING:
    from siamese.bundle import ModelBundle

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
    baseline: str | None = None           # the study's best baseline on validation
    baseline_value: float | None = None
    margin: float | None = None           # winner − best baseline on validation (signed: > 0 beats it)
    winner_basis: str = "search"          # "confirmed mean of n seeds" when the study confirmed its winner


def best_trial(parent: mlflow.entities.Run) -> tuple[dict[str, Any], str]:
    """The study's best finished trial by its validation objective, and where its model is.

    Ties go to the trial the study itself kept as best (the parent's ``best_trial_run_id``). A study
    that confirmed its winner with fresh seeds gives that winner's kept seed (the parent's model).

    Returns:
        The trial's row (run id, metrics, params) and the model's artifact URI.
    """
    tags = parent.data.tags
    objective, direction = tags["objective"], tags.get("direction", "max")
    frame = tracking.children(parent.info.run_id)
    col = f"metrics.{objective}"
    if frame.empty or col not in frame.columns:
        raise TrackingError(f"study '{tags.get('study')}' has no finished trials with {objective}")
    kept = frame[(frame["run_id"] == tags.get("best_run_id")) & (frame["status"] == "FINISHED")]
    if tags.get("best_model_source") == "confirm" and len(kept):
        # The confirmed winner's best seed: its model is the one the parent holds.
        return kept.iloc[0].to_dict(), f"runs:/{parent.info.run_id}/model"
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


def baseline_margin(parent: mlflow.entities.Run, val_value: float) -> tuple[str | None, float | None, float | None]:
    """The study's best finished baseline on validation and the winner's margin over it.

    Returns:
        The baseline's name, its objective value and ``sign · (val_value − it)`` (> 0: beaten);
        all None when the study ran no baselines.
    """
    tags = parent.data.tags
    col, sign = f"metrics.{tags['objective']}", 1.0 if tags.get("direction", "max") == "max" else -1.0
    frame = tracking.children(parent.info.run_id)
    if frame.empty or col not in frame.columns:
        return None, None, None
    base = frame[(frame["tags.kind"] == "baseline") & (frame["status"] == "FINISHED") & frame[col].notna()]
    if base.empty:
        return None, None, None
    best = base.loc[(sign * base[col]).idxmax()]
    return str(best.get("tags.baseline", best["tags.mlflow.runName"])), float(best[col]), sign * (val_value - float(best[col]))


def _champion_value(client: MlflowClient, name: str, metric: str, test: PairSet) -> tuple[str | None, float | None, str]:
    """The current champion's version and its ``metric`` on this test file (scored now)."""
    from siamese.registry import load_bundle  # Keras: imported once the backend is chosen (promote())

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None, None, f"no {CHAMPION} yet for {name}"
    try:
        value = load_bundle(f"models:/{name}@{CHAMPION}").evaluate(test)[metric]
    except Exception as exc:  # a champion that cannot score this file cannot defend its place
        return version.version, None, f"{CHAMPION} v{version.version} cannot score this test file ({type(exc).__name__}: {exc})"
    return version.version, value, ""


def plan(cfg: DictConfig, tracker: tracking.Tracker) -> tuple[Plan, "ModelBundle", mlflow.entities.Run]:
    """Work out the promotion without changing anything."""
    from siamese.registry import load_bundle  # Keras: imported once the backend is chosen (promote())

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
    confirmed = parent.data.metrics.get(f"confirm_{objective}_mean")
    val_value = float(row[f"metrics.{objective}"])
    by_mean = tags.get("best_model_source") == "confirm" and confirmed is not None
    winner = float(confirmed) if by_mean else val_value
    basis = f"confirmed mean of {int(parent.data.metrics.get('confirm_seeds', 0))} seeds" if by_mean else "the best trial's"
    base_name, base_value, margin = baseline_margin(parent, winner)
    if margin is not None and margin <= 0:
        lost = (f"{objective} {winner:.4f} ({basis}) does not beat the best baseline {base_name}'s {base_value:.4f} "
                f"on validation (margin {margin:+.4f})")
        alias, reason = (CHAMPION, f"forced: {lost}") if cfg.promote.force else (CHALLENGER, lost)
    elif champ is None:
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
    if margin is None:
        notes.append("the study ran no baselines: no margin over a baseline to check")
    p = Plan(name, tags.get("study", ""), row["run_id"], objective, val_value, metric, test_metrics, version, champ,
             alias, reason, test_file=str(test_path), test_sha256=digest, notes=notes, baseline=base_name,
             baseline_value=base_value, margin=margin, winner_basis=basis)
    return p, bundle, parent


def _describe(p: Plan) -> str:
    champ = "none" if p.champion_version is None else (
        f"v{p.champion_version} ({p.metric}={p.champion_value:.4f})" if p.champion_value is not None else f"v{p.champion_version}")
    lines = [f"study {p.study}: best run {p.source_run_id} ({p.objective}={p.val_value:.4f}, chosen on validation)",
             *([f"margin over the best baseline ({p.baseline}, {p.objective}={p.baseline_value:.4f}) on validation: "
                f"{p.margin:+.4f} ({p.winner_basis})"] if p.margin is not None else []),
             f"test file {p.test_file}: " + " ".join(f"{k}={v:.4f}" for k, v in p.test_metrics.items()),
             f"current {CHAMPION}: {champ}",
             f"→ {p.model_name}: alias {p.alias} ({p.reason})", *(f"note: {n}" for n in p.notes)]
    return "\n".join(lines)


def _registered(client: MlflowClient, name: str) -> bool:
    """Whether the registered model ``name`` exists."""
    try:
        client.get_registered_model(name)
        return True
    except mlflow.exceptions.MlflowException:
        return False


def register(p: Plan, bundle: "ModelBundle", parent: mlflow.entities.Run, tracker: tracking.Tracker) -> str:
    """Log the pyfunc in a promotion run, register it, describe it, set the alias.

    A failure after the version exists deletes it, so the registry never holds a half-described
    version, and the promotion run ends FAILED.

    Returns:
        The new version number.
    """
    from siamese.registry import log_pyfunc  # Keras: imported once the backend is chosen (promote())

    client = MlflowClient()
    source = client.get_run(p.source_run_id)
    trial_config = mlflow.artifacts.load_text(f"runs:/{p.source_run_id}/config.yaml")
    val_metrics = {k: v for k, v in source.data.metrics.items() if k.startswith("val_") and not k.endswith("_epoch")}
    ptags = parent.data.tags
    # What identifies the model and why it holds its alias; its metrics go on the logged model.
    tags = {"source_run_id": p.source_run_id, "study": p.study, "study_run_id": parent.info.run_id,
            "objective": p.objective, "promotion": f"{p.alias}: {p.reason}", "test_file": p.test_file,
            "data_test_sha256": p.test_sha256, "data_train_sha256": ptags.get("data_train_sha256", ""),
            "git_commit": ptags.get("git_commit", ""), "seed": source.data.tags.get("confirm_seed", source.data.tags.get("seed", ptags.get("seed", ""))),
            **({"best_baseline": p.baseline, "beats_best_baseline": str(p.margin > 0).lower()} if p.margin is not None else {})}
    model_metrics = {**val_metrics, **p.test_metrics,
                     **({"margin_over_best_baseline": p.margin} if p.margin is not None else {})}
    description = "\n".join([
        f"Best trial of study `{p.study}` (run `{p.source_run_id}`), chosen by {p.objective} on validation; "
        f"test metrics computed at promotion on `{p.test_file}` (sha256 {p.test_sha256[:16]}…).", "",
        "| metric | value |", "|---|---|", *(f"| {k} | {v:.4f} |" for k, v in model_metrics.items()), "",
        f"Alias: {p.alias} ({p.reason}).", "", "Resolved config:", "```yaml", trial_config.rstrip(), "```"])
    with tracker.run(f"{p.study}/promote-{p.model_name}",
                     tags={"kind": "promotion", "study": p.study, "source_run_id": p.source_run_id}) as run:
        runmeta.announce(tracker.cfg, "promotion")
        mlflow.log_metrics(p.test_metrics)
        mlflow.log_text(trial_config, "config.yaml")
        # The logged model's source run is the winning trial (the UI's "Source run"), its params
        # the trial's; this run only logs it and scores test.
        model = mlflow.initialize_logged_model(
            name="model", source_run_id=p.source_run_id, experiment_id=run.info.experiment_id,
            params=dict(source.data.params),
            tags={k: tags[k] for k in ("study", "objective", "git_commit", "seed")})
        info = log_pyfunc(bundle, model_id=model.model_id)
        mlflow.log_metrics(model_metrics, model_id=model.model_id)
        if not _registered(client, p.model_name):
            client.create_registered_model(p.model_name)
        version = client.create_model_version(p.model_name, info.model_uri, run_id=p.source_run_id, tags=tags,
                                              model_id=model.model_id).version
        try:
            client.update_model_version(p.model_name, version, description=description)
            client.set_registered_model_alias(p.model_name, p.alias, version)
        except BaseException:
            client.delete_model_version(p.model_name, version)
            raise
        mlflow.set_tags({"registered_model": p.model_name, "registered_version": str(version), "alias": p.alias,
                         "mlflow.runName": f"{p.study}/promote-{p.model_name}-v{version}"})
    return str(version)


def promote(cfg: DictConfig) -> dict[str, Any]:
    """Register the best model of the study ``cfg`` names; ``promote.dry_run`` only prints the plan.

    Returns:
        The plan as a dict (with ``version`` set unless a dry run).
    """
    backend.start_for(cfg)
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
