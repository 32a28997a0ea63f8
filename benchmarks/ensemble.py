"""Would a seed ensemble beat the seed a study keeps? For each trial of a study's confirmation (one config
trained on fresh seeds), the test accuracy of the seed the study keeps (the best validation AUC), the mean
over its seeds, and that of a seed ensemble: the mean of the seeds' scores, each standardised by its own
validation scores (seeds of one config score on different scales), its cut chosen on validation by the
rule runs use (:func:`siamese.metrics.bagged_threshold`).

    python -m benchmarks.ensemble --data mnist5k --seed 0 studies/mnist/confirm

The models must come from a study run on this data config and seed (see :mod:`benchmarks.thresholds`).
Not part of ``make bench``; its figures are quoted in benchmarks/README.md with the commands that made them.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

import numpy as np
from hydra.errors import HydraException

from benchmarks.cli import run_tool
from benchmarks.common import config_error
from benchmarks.thresholds import MODEL_FILES, scored, split_arguments

COLUMNS = ["data", "trial", "seeds", "val AUC mean", "kept seed: test accuracy", "seed mean test accuracy",
           "ensemble test accuracy", "ensemble test AUC", "kept seed: oracle test accuracy"]


def trials(confirm: Path) -> dict[str, list[Path]]:
    """A confirmation folder's model folders (``<trial>-s<seed>``, with ``bundle.json`` and ``model.keras``)
    grouped by trial, in name order."""
    out: dict[str, list[Path]] = {}
    for folder in sorted(p for p in confirm.iterdir() if all((p / f).is_file() for f in MODEL_FILES)):
        match = re.fullmatch(r"(.+)-s\d+", folder.name)
        if match:
            out.setdefault(match.group(1), []).append(folder)
    return out


def compare(data: str, seed: int, confirm: Path, overrides: list[str] = ()) -> list[dict]:
    """One row per trial: val AUC mean over its seeds, the kept seed's, the seeds' mean and the ensemble's
    test accuracy (the study's winner is the row with the best val AUC mean)."""
    from sklearn.metrics import roc_auc_score

    from siamese.metrics import bagged_threshold, best_threshold

    accuracy = lambda y, s, cut: float(np.mean((s >= cut) == (y == 1)))  # noqa: E731
    groups = trials(confirm)
    # One pass over every model: the data set is read and split once, not once per trial.
    every = {folder: run for folder, *run in scored(data, seed, [f for fs in groups.values() for f in fs], overrides)}
    rows = []
    for trial, folders in groups.items():
        runs = [(folder, *every[folder]) for folder in folders]
        y_val, y_test = runs[0][1].val.y, runs[0][1].test.y
        per = [{"val_auc": roc_auc_score(y_val, sv), "test_accuracy": accuracy(y_test, st, bagged_threshold(y_val, sv)),
                "oracle": best_threshold(y_test, st)[1]} for _, _, sv, st in runs]
        kept = max(per, key=lambda r: r["val_auc"])
        z_val = np.mean([(sv - sv.mean()) / sv.std() for _, _, sv, _ in runs], axis=0)
        z_test = np.mean([(st - sv.mean()) / sv.std() for _, _, sv, st in runs], axis=0)
        rows.append({"trial": trial, "seeds": len(runs), "val_auc_mean": statistics.mean(r["val_auc"] for r in per),
                     "kept": kept["test_accuracy"], "seed_mean": statistics.mean(r["test_accuracy"] for r in per),
                     "ensemble": accuracy(y_test, z_test, bagged_threshold(y_val, z_val)),
                     "ensemble_auc": float(roc_auc_score(y_test, z_test)), "kept_oracle": kept["oracle"]})
    return rows


def table(data: str, rows: list[dict]) -> str:
    """The rows as a markdown table; the winner's trial (best val AUC mean) in bold."""
    winner = max(rows, key=lambda r: r["val_auc_mean"])["trial"]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        name = f"**{r['trial']}** (winner)" if r["trial"] == winner else r["trial"]
        lines.append(f"| {data} | {name} | {r['seeds']} | {r['val_auc_mean']:.4f} | {r['kept']:.4f} | {r['seed_mean']:.4f} | "
                     f"{r['ensemble']:.4f} | {r['ensemble_auc']:.4f} | {r['kept_oracle']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = split_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("confirm", type=Path, help="a study's confirm/ folder (<trial>-s<seed> model folders)")
    args = parser.parse_args(argv)
    from siamese.errors import UserError

    groups = trials(args.confirm) if args.confirm.is_dir() else {}
    if not any(len(g) > 1 for g in groups.values()):
        print(f"error: {args.confirm} holds no trial with two or more seed models (<trial>-s<seed> folders with "
              "bundle.json and model.keras): give a study's confirm/ folder", file=sys.stderr)
        return 2
    try:
        rows = compare(args.data, args.seed, args.confirm, args.set)
    except (UserError, HydraException) as exc:
        print(config_error(exc, args.set), file=sys.stderr)
        return 2
    print(table(args.data, rows))
    return 0


if __name__ == "__main__":
    run_tool(main)
