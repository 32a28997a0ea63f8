"""A study's results: one ranking of its runs, the leaderboard, the study figures, and the CLI table.

    python -m siamese.report [data=…] [study=…] [report.top=10] [report.by=loss.name,model.distance]

The same ranking serves the parent run's ``leaderboard.csv`` (written by ``siamese.tune``) and the
terminal table here; the same short names serve the study's progress lines and this table.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from omegaconf import DictConfig

from siamese import plots
from siamese.errors import UserError
from siamese.runmeta import SHORT, ui_url
from siamese.tracking import Tracker, children

METRICS = ("val_auc", "val_accuracy", "val_f1", "val_ap")


def _number(value: Any) -> Any:
    """A float, or a string spelling one with a point or exponent, as 3 significant digits."""
    if isinstance(value, str) and ("." in value or "e" in value):
        try:
            value = float(value)
        except ValueError:
            return value
    return f"{value:.3g}" if isinstance(value, float) else value


def short(values: dict[str, Any], width: int = 60) -> str:
    """``dist=l1 loss=bce drop=0.2 …``: a trial's values in ``width`` characters at most."""
    text = " ".join(f"{SHORT.get(k, k.split('.')[-1])}={_number(v)}" for k, v in values.items()
                    if v is not None and v not in ("", "None"))
    return text if len(text) <= width else text[: width - 1] + "…"


def trial_params(row: pd.Series) -> dict[str, Any]:
    """A trial run's searched values by config key (its ``params.*`` but ``trial_id``), the keys
    with short names first, in :data:`SHORT`'s order."""
    values = {c[len("params."):]: v for c, v in row.items()
              if c.startswith("params.") and c != "params.trial_id" and isinstance(v, str)}
    order = list(SHORT)
    return dict(sorted(values.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


def within(name: Any, study: Any) -> Any:
    """A run's name inside its study: ``t/trial-07`` → ``trial-07``."""
    return name.removeprefix(f"{study}/") if isinstance(name, str) and isinstance(study, str) else name


def one_per_trial(frame: pd.DataFrame) -> pd.DataFrame:
    """A study's child runs with one run per trial: a trial run again after a stop or a dead process
    (same ``trial_id``) is its FINISHED run, else its latest."""
    if frame.empty or "tags.trial_id" not in frame.columns:
        return frame
    trials = frame["tags.kind"] == "trial"
    order = frame[trials].assign(_done=frame["status"] == "FINISHED").sort_values(["_done", "start_time"], kind="stable")
    latest = order.drop_duplicates("tags.trial_id", keep="last").drop(columns="_done")
    return pd.concat([latest, frame[~trials]]).sort_values("start_time", ascending=False, kind="stable")


def rank(frame: pd.DataFrame, objective: str, direction: str) -> pd.DataFrame:
    """A study's child runs (trials and baselines) best first by ``objective`` on validation;
    runs without it last."""
    col = f"metrics.{objective}"
    if frame.empty or col not in frame.columns:
        return frame
    return frame.sort_values(col, ascending=direction != "max", na_position="last", kind="stable").reset_index(drop=True)


def leaderboard(frame: pd.DataFrame, objective: str, direction: str) -> pd.DataFrame:
    """The ranked runs with name, kind, status, validation metrics and searched params (the CSV)."""
    ranked = rank(frame, objective, direction)
    if ranked.empty:
        return ranked
    cols = {"run_id": "run_id", "tags.mlflow.runName": "name", "tags.kind": "kind", "status": "status"}
    board = ranked[[c for c in cols if c in ranked.columns]].rename(columns=cols)
    if "name" in board.columns and "tags.study" in ranked.columns:
        board["name"] = [within(n, s) for n, s in zip(board["name"], ranked["tags.study"])]
    for m in dict.fromkeys((*METRICS, objective)):
        if f"metrics.{m}" in ranked.columns:
            board[m] = ranked[f"metrics.{m}"]
    for c in ranked.columns:
        if c.startswith("params.") and c != "params.trial_id":
            board[c[len("params."):]] = ranked[c]
    return board


def study_figures(frame: pd.DataFrame, objective: str, direction: str = "max") -> dict[str, Any]:
    """``plots/objective_by_trial.png`` and ``plots/objective_vs_params.png`` of a study's trials
    (none when no trial logged the objective)."""
    trials = frame[frame["tags.kind"] == "trial"]
    col = f"metrics.{objective}"
    if col not in trials.columns:
        return {}
    number = pd.to_numeric(trials["tags.trial_id"], errors="coerce")
    trials = trials.assign(_n=number).sort_values(["_n", "start_time"])
    values = trials[col].to_numpy(dtype=float)
    # A baseline's params (C, features) are columns of the frame too: not the trials'.
    params = {c[len("params."):]: trials[c] for c in trials.columns
              if c.startswith("params.") and c != "params.trial_id" and trials[c].notna().any()}
    numbers = trials["_n"].to_numpy() if trials["_n"].notna().all() else None
    return {"plots/objective_by_trial.png": plots.objective_by_trial(values, objective, numbers, direction),
            "plots/objective_vs_params.png": plots.objective_vs_params(params, values, objective)}


def table(frame: pd.DataFrame, objective: str, direction: str, top: int) -> pd.DataFrame:
    """Top finished trials then baselines, with the columns the terminal table shows."""
    ranked = rank(frame, objective, direction)
    trials = ranked[(ranked["tags.kind"] == "trial") & (ranked["status"] == "FINISHED")].head(top)
    base = ranked[ranked["tags.kind"] == "baseline"]
    rows = []
    for rank_no, (_, r) in enumerate(pd.concat([trials, base]).iterrows(), 1):
        trial = r["tags.kind"] == "trial"
        rows.append({
            "#": str(rank_no) if trial else "-",
            "run": within(r["tags.mlflow.runName"], r.get("tags.study")),
            objective: r.get(f"metrics.{objective}"),
            "val_accuracy": r.get("metrics.val_accuracy"),
            "val_auc": r.get("metrics.val_auc"),
            "params": short(trial_params(r), width=46) if trial else "",
            "run_id": r["run_id"][:8],
        })
    return pd.DataFrame(rows)


def by_choice(frame: pd.DataFrame, keys: list[str], objective: str) -> dict[str, pd.DataFrame]:
    """For each key, the objective of finished trials grouped by the key's value."""
    trials = frame[(frame["tags.kind"] == "trial") & (frame["status"] == "FINISHED")]
    out = {}
    for key in keys:
        col = f"params.{key}"
        if col not in trials.columns and f"params.{key}.name" in trials.columns:
            col = f"params.{key}.name"  # a group (loss, optimizer) stands for its name
        if col not in trials.columns:
            import difflib

            known = sorted({c[len("params."):].removesuffix(".name") for c in trials.columns if c.startswith("params.")})
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"its parameters: {', '.join(known[:12])}"
            raise UserError(f"report.by: '{key}' is not a parameter of this study's trials ({hint})")
        grouped = trials.groupby(trials[col].fillna("(inactive)"))[f"metrics.{objective}"]
        # sd of one run is undefined: blank (NaN shows as "-"), not a number.
        out[key] = grouped.agg(["count", "mean", "std", "max"]).rename(columns={"std": "sd"}).sort_values(
            "mean", ascending=False)
    return out


def render(board: pd.DataFrame, width: int = 100) -> str:
    """Fixed-width text, each line at most ``width`` characters."""
    # Formatted here: to_string prints NaN as "NaN" whatever the formatter. A missing value is
    # "-"; a group of one run has no sd: blank.
    shown = board.copy()
    for c in board.columns:
        if board[c].dtype.kind == "f":
            blank = "" if c == "sd" else "-"
            shown[c] = [f"{v:.4f}" if pd.notna(v) else blank for v in board[c]]
    text = shown.to_string(index=False, max_colwidth=46)
    return "\n".join(line[:width] for line in text.splitlines())


def report(cfg: DictConfig) -> dict[str, Any]:
    """Print the leaderboard of a study; return it (and the by-choice tables) as frames.

    Raises:
        UserError: no such study, no trial runs yet, or a ``report.by`` key the trials lack.
    """
    parent = Tracker(cfg.tracking).find_study(cfg.study)
    tags = parent.data.tags
    objective, direction = tags.get("objective", "val_auc"), tags.get("direction", "max")
    frame = one_per_trial(children(parent.info.run_id))
    if frame.empty:
        raise UserError(f"study '{tags.get('study')}' has no trial runs yet")
    board = table(frame, objective, direction, int(cfg.report.top))
    groups = {}
    if cfg.report.by:  # grouped before anything is printed: a mistyped key is one line, not a half report
        by = cfg.report.by
        keys = [str(k).strip() for k in (by if not isinstance(by, str) else by.split(",")) if str(k).strip()]
        groups = by_choice(frame, keys, objective)
    m = parent.data.metrics
    print(f"study {tags.get('study')} ({tags.get('tuner')}, {objective} {direction}): "
          f"{int(m.get('trials_completed', 0))} trials, {int(m.get('trials_failed', 0))} failed")
    print(f"parent run {parent.info.run_id}: {ui_url(cfg.tracking, parent)}")
    if "test_accuracy" in m:
        print(f"best trial {tags.get('best_trial_id')}: test_accuracy={m['test_accuracy']:.4f} "
              f"test_auc={m['test_auc']:.4f} (thresholds from validation)")
        if "beats_best_baseline" in tags:  # absent when no baseline finished
            print(f"beats the best baseline on validation: {tags['beats_best_baseline']}")
    if f"confirm_{objective}_mean" in m:
        print(f"confirmed winner: trial {tags.get('confirm_winner_trial_id')}, {objective} "
              f"{m[f'confirm_{objective}_mean']:.4f} ± {m[f'confirm_{objective}_sd']:.4f} over "
              f"{int(m.get('confirm_seeds', 0))} fresh seeds")
    print(render(board))
    for key, g in groups.items():
        print(f"\n{objective} by {key}")
        print(render(g.reset_index().rename(columns=lambda c: key if c.startswith("params.") else c)))
    return {"leaderboard": board, "by": groups}


if __name__ == "__main__":
    from siamese.cli import entry

    entry(report, "report", lists=("report.by",))()
