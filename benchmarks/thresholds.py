"""Threshold rules compared on trained models: each model's validation scores choose a cut by each rule,
and the model's test accuracy at that cut is printed beside the best cut test allows (the oracle).

    python -m benchmarks.thresholds --data mnist5k --seed 1 studies/mnist/confirm/*  (model folders)

The models must have been trained on this data config and seed (a study's trials, confirmation runs and
kept model all are): the validation split is rebuilt from them, and a model of another width is refused;
one of the same width trained on another split cannot be told apart (its validation pairs would be
partly its training pairs). Rules: ``empirical`` (the one cut that
maximises validation accuracy), ``bagged`` (:func:`siamese.metrics.bagged_threshold`, what runs use),
``platt`` (where a logistic fit of P(same | score) on validation crosses 1/2). Not part of ``make bench``;
its figures are quoted in benchmarks/README.md with the commands that produced them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from hydra.errors import HydraException

from benchmarks.cli import run_tool
from benchmarks.common import compose_cfg, config_error

RULES = ("empirical", "bagged", "platt")
MODEL_FILES = ("bundle.json", "model.keras")  # what a saved model folder holds


def platt_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """The score where a logistic fit of P(same | score) (Platt scaling, on the standardised score) crosses
    1/2; the empirical cut when the fit does not rise with the score."""
    from sklearn.linear_model import LogisticRegression

    from siamese.metrics import best_threshold

    mean, sd = float(s.mean()), float(s.std())
    if sd > 0 and len(np.unique(y)) == 2:
        fit = LogisticRegression().fit(((s - mean) / sd).reshape(-1, 1), y)
        if fit.coef_[0, 0] > 0:
            return mean - sd * float(fit.intercept_[0]) / float(fit.coef_[0, 0])
    return best_threshold(y, s)[0]


SPLIT_KEYS = ("data.name", "data.val_fraction", "data.split", "data.shuffle")  # with the seed: which pairs validate


def check_study(folder: Path, cfg: Any, seed: int, hashes: dict[str, str]) -> bool:
    """A model of a study (``<study>/best_model`` or ``<study>/confirm/<trial>-s<seed>``) must be scored on
    the split its study ran on: the seed, the data files and the split settings its ``study.json`` records.
    A model outside a study is not checked (its width still is).

    Returns:
        Whether the model is in a study folder (and so was checked).

    Raises:
        DataError: the study ran with another seed, data file or split setting (named, with the fix).
    """
    from omegaconf import OmegaConf

    from siamese.errors import DataError

    state = next((d / "study.json" for d in (folder.parent, folder.parent.parent) if (d / "study.json").is_file()), None)
    if state is None:
        return False
    study = json.loads(state.read_text())
    fixed, given = study.get("fixed", {}), {"seed": str(seed), **{k: str(OmegaConf.select(cfg, k)) for k in SPLIT_KEYS}}
    for key, value in given.items():
        if key in fixed and fixed[key] != value:
            raise DataError(f"{folder}'s study ran with {key}={fixed[key]} ({state}), not {value}: give the --data, "
                            "--seed and --set it ran with")
    for part, digest in study.get("data_sha256", {}).items():
        if part in hashes and hashes[part] != digest:
            raise DataError(f"{folder}'s study ran on another {part} file than data={cfg.data.name} reads now ({state}): "
                            "give the --data and --set (data.train=…) it ran with")
    return True


def scored(data: str, seed: int, models: list[Path], overrides: list[str] = ()) -> Iterator[tuple[Path, Any, np.ndarray, np.ndarray]]:
    """Each model's scores on the validation and test pairs of ``data`` at ``seed`` (the split its run saw).

    Yields:
        (model folder, the dataset, validation scores, test scores); scores are higher for "same".

    Raises:
        ConfigError: ``seed`` given as an override, or a setting a run could not use.
        DataError: a model's study ran on another split (:func:`check_study`), or a model takes another
            number of values a side than the data has.
    """
    from siamese.bundle import ModelBundle
    from siamese.checks import check_config
    from siamese.data import load_dataset
    from siamese.errors import ConfigError, DataError

    # The pairs as read: each model applies its own preprocessing (fitted on its run's training split and
    # saved in its bundle), so models of one study that searched data.preprocess are each scored right.
    from benchmarks.levers import override_key

    if any(override_key(o) == "seed" for o in overrides):
        raise ConfigError("seed is set by --seed, not --set")
    with tempfile.TemporaryDirectory() as store:
        cfg = compose_cfg("train", Path(store), f"data={data}", f"seed={seed}", *overrides, "data.preprocess=none")
    check_config(cfg)
    dataset = load_dataset(cfg.data, seed)
    for folder in models:  # every model checked before any is scored
        if not check_study(folder, cfg, seed, dataset.hashes):
            print(f"warning: {folder} is in no study folder (no study.json beside it): its seed and split are not "
                  "checked; they must be the --seed and --set it was trained with", file=sys.stderr)
    for folder in models:
        bundle = ModelBundle.load(folder)
        if bundle.dim != dataset.val.left.shape[1]:
            raise DataError(f"{folder} takes {bundle.dim} values a side, data={data} has {dataset.val.left.shape[1]}: "
                            "give the --data (and --set) its study was run with")
        yield folder, dataset, bundle.score(dataset.val), bundle.score(dataset.test)


def compare(data: str, seed: int, models: list[Path], overrides: list[str] = ()) -> list[dict]:
    """Per model: the test accuracy at each rule's validation cut, the oracle's, and test AUC."""
    from sklearn.metrics import roc_auc_score

    from siamese.metrics import bagged_threshold, best_threshold

    rows = []
    for folder, dataset, s_val, s_test in scored(data, seed, models, overrides):
        y_val, y_test = dataset.val.y, dataset.test.y
        cuts = {"empirical": best_threshold(y_val, s_val)[0], "bagged": bagged_threshold(y_val, s_val),
                "platt": platt_threshold(y_val, s_val)}
        row = {"model": str(folder), **{rule: float(np.mean((s_test >= t) == (y_test == 1))) for rule, t in cuts.items()},
               "oracle": best_threshold(y_test, s_test)[1], "test_auc": float(roc_auc_score(y_test, s_test))}
        rows.append(row)
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def summary(data: str, rows: list[dict]) -> str:
    """One table row per rule: mean test accuracy, and against ``empirical`` the mean paired gain and how
    many models it raised, kept, lowered."""
    lines = ["| data | rule | models | mean test accuracy | Δ vs empirical | higher / equal / lower |",
             "|---|---|---|---|---|---|"]
    for rule in (*RULES, "oracle"):
        gains = [r[rule] - r["empirical"] for r in rows]
        tally = "—" if rule == "empirical" else f"{sum(g > 0 for g in gains)} / {sum(g == 0 for g in gains)} / {sum(g < 0 for g in gains)}"
        lines.append(f"| {data} | {rule} | {len(rows)} | {statistics.mean(r[rule] for r in rows):.4f} | "
                     f"{'—' if rule == 'empirical' else f'{statistics.mean(gains):+.4f}'} | {tally} |")
    return "\n".join(lines)


def split_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--data``, ``--seed`` and ``--set``: the split the models were trained on (checked against a
    study's study.json, :func:`check_study`)."""
    parser.add_argument("--data", default="digits")
    parser.add_argument("--seed", type=int, default=0, help="the seed the models' study (or runs) used")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override the models' runs were given (e.g. data.train=…; repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = split_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("models", nargs="+", type=Path, help="model folders (model.keras + bundle.json)")
    args = parser.parse_intermixed_args(argv)  # model folders before and after the options
    from siamese.errors import UserError

    missing = [(m, f) for m in args.models for f in MODEL_FILES if not (m / f).is_file()]
    if missing:
        print(f"error: {missing[0][0]} is not a model folder (no {missing[0][1]}): give folders such as a study's "
              "best_model or confirm/<trial>-s<seed>", file=sys.stderr)
        return 2
    try:
        rows = compare(args.data, args.seed, args.models, args.set)
    except (UserError, HydraException) as exc:
        print(config_error(exc, args.set), file=sys.stderr)
        return 2
    print()
    print(summary(args.data, rows))
    return 0


if __name__ == "__main__":
    run_tool(main)
