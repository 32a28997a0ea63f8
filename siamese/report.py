"""Leaderboard of a study from MLflow: top trials, baselines, and the objective by choice.

    python -m siamese.report [data=…] [study=…] [report.top=10] [report.by=loss.name,model.distance]
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from omegaconf import DictConfig

from siamese.errors import UserError
from siamese.tracking import children, find_study

SHORT = {"model.distance": "dist", "loss.name": "loss", "model.dropout": "drop", "model.depth": "depth",
         "model.width": "width", "model.output_activation": "out", "optimizer.learning_rate": "lr"}


def _params(row: pd.Series) -> str:
    parts = []
    for key, name in SHORT.items():
        value = row.get(f"params.{key}")
        if isinstance(value, str) and value not in ("", "None"):
            try:
                value = f"{float(value):.3g}" if "." in value or "e" in value else value
            except ValueError:
                pass
            parts.append(f"{name}={value}")
    return " ".join(parts)


def table(frame: pd.DataFrame, objective: str, direction: str, top: int) -> pd.DataFrame:
    """Top trials then baselines, with the columns the terminal table shows."""
    ascending = direction != "max"
    trials = frame[frame["tags.kind"] == "trial"]
    ok = trials[trials["status"] == "FINISHED"].sort_values(f"metrics.{objective}", ascending=ascending).head(top)
    base = frame[frame["tags.kind"] == "baseline"].sort_values(f"metrics.{objective}", ascending=ascending)
    rows = []
    for rank, (_, r) in enumerate(pd.concat([ok, base]).iterrows(), 1):
        trial = r["tags.kind"] == "trial"
        rows.append({
            "#": str(rank) if trial else "-",
            "run": r["tags.mlflow.runName"],
            objective: r.get(f"metrics.{objective}"),
            "val_acc": r.get("metrics.val_accuracy"),
            "val_auc": r.get("metrics.val_auc"),
            "params": _params(r) if trial else "",
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
            raise UserError(f"report.by: '{key}' is not a parameter of this study's trials")
        grouped = trials.groupby(trials[col].fillna("(inactive)"))[f"metrics.{objective}"]
        out[key] = grouped.agg(["count", "mean", "std", "max"]).sort_values("mean", ascending=False)
    return out


def render(board: pd.DataFrame, width: int = 100) -> str:
    """Fixed-width text, each line at most ``width`` characters."""
    fmt = {c: (lambda v: f"{v:.4f}" if pd.notna(v) else "-") for c in board.columns if board[c].dtype.kind == "f"}
    text = board.to_string(index=False, formatters=fmt, max_colwidth=46)
    return "\n".join(line[:width] for line in text.splitlines())


def report(cfg: DictConfig) -> dict[str, Any]:
    """Print the leaderboard of a study; return it (and the by-choice tables) as frames."""
    parent = find_study(cfg)
    tags = parent.data.tags
    objective, direction = tags.get("objective", "val_auc"), tags.get("direction", "max")
    frame = children(parent.info.run_id)
    if frame.empty:
        raise UserError(f"study '{tags.get('study')}' has no trial runs yet")
    board = table(frame, objective, direction, int(cfg.report.top))
    m = parent.data.metrics
    print(f"study {tags.get('study')} ({tags.get('tuner')}, {objective} {direction}): "
          f"{int(m.get('trials_completed', 0))} trials, {int(m.get('trials_failed', 0))} failed")
    print(f"parent run {parent.info.run_id}")
    if "test_accuracy" in m:
        print(f"best trial {tags.get('best_trial_id')}: test_accuracy={m['test_accuracy']:.4f} "
              f"test_auc={m['test_auc']:.4f} (thresholds from validation)")
        print(f"beats the best baseline on validation: {tags.get('beats_best_baseline')}")
    print(render(board))
    groups = {}
    if cfg.report.by:
        by = cfg.report.by
        keys = [str(k).strip() for k in (by if not isinstance(by, str) else by.split(",")) if str(k).strip()]
        groups = by_choice(frame, keys, objective)
        for key, g in groups.items():
            print(f"\n{objective} by {key}")
            print(render(g.reset_index().rename(columns=lambda c: key if c.startswith("params.") else c)))
    return {"leaderboard": board, "by": groups}


if __name__ == "__main__":
    from siamese.cli import entry

    entry(report, "report", lists=("report.by",))()
