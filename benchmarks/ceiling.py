"""How far do other learners get on the same pairs? The study's split of one data set per seed; each learner's
setting chosen on validation by AUC from a small grid, its accuracy cut chosen on validation as runs choose
it; then the same setting refit on training + validation (as scikit-learn's ``GridSearchCV(refit=True)``
does), scored on test at the cut the split fit chose: nothing is left to choose one on, so the refit's
accuracy also says how well that cut suits the refit model; its AUC does not depend on a cut. Given a trial
config (train overrides, at least one outside ``data.*``), the Siamese model is measured the same way: its
refit trains for the epochs whose weights the split fit kept (the best epoch when early stopping restores
it, else every epoch the split fit ran), without early stopping.

    python -m benchmarks.ceiling --data mrpc-minilm --seeds 0,1,2 [model.distance=l2 loss=contrastive …]

It answers "is an accuracy target within these features' reach?" before more levers are tried. Not part
of ``make bench``; its table is quoted in benchmarks/README.md with the command that produced it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from hydra.errors import HydraException

from benchmarks.cli import run_tool
from benchmarks.common import compose_cfg, config_error, mean_sd
from benchmarks.levers import listed, override_key

FEATURES = ("sum", "absdiff", "product", "cosine")  # the study's logistic baseline's pair features


def learners() -> dict[str, tuple[list[dict[str, Any]], Callable[..., Any]]]:
    """The scikit-learn learners: name → (grid of settings, maker: (seed, **setting) → unfitted estimator),
    imported here (scikit-learn is slow to import). Small grids: each point is a fit on a few thousand pairs
    of ~1,000 standardised features."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    return {
        "logistic regression": ([{"C": float(c)} for c in np.logspace(-4, 0, 9)],
                                lambda seed, **p: LogisticRegression(max_iter=3000, **p)),
        "RBF SVM": ([{"C": c} for c in (0.3, 1.0, 3.0)], lambda seed, **p: SVC(kernel="rbf", gamma="scale", **p)),
        "gradient boosting": ([{"learning_rate": lr, "max_leaf_nodes": n} for lr in (0.05, 0.1) for n in (15, 31)],
                              lambda seed, **p: HistGradientBoostingClassifier(max_iter=300, random_state=seed, **p)),
        "MLP (256, scikit-learn)": ([{"alpha": a} for a in (0.01, 0.1, 1.0)],
                                    lambda seed, **p: MLPClassifier((256,), early_stopping=True, max_iter=300,
                                                                    random_state=seed, **p)),
    }


def _setting(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in setting.items())


def _score(model: Any, x: np.ndarray) -> np.ndarray:
    return model.decision_function(x) if hasattr(model, "decision_function") else model.predict_proba(x)[:, 1]


def _test_metrics(y_val: np.ndarray, s_val: np.ndarray, y_test: np.ndarray, s_test: np.ndarray,
                  refit_test: np.ndarray | None) -> dict[str, float]:
    """Split fit and refit test metrics, both at the cut chosen on the split fit's validation scores."""
    from siamese.metrics import auc, choose_thresholds

    cut = choose_thresholds(y_val, s_val)["threshold"]
    acc = lambda s: float(np.mean((s >= cut) == (y_test > 0.5)))  # noqa: E731
    out = {"val_auc": auc(y_val, s_val), "test_auc": auc(y_test, s_test), "test_accuracy": acc(s_test)}
    if refit_test is not None:
        out.update({"refit_test_auc": auc(y_test, refit_test), "refit_test_accuracy": acc(refit_test)})
    return out


def sklearn_rows(data: Any, seed: int) -> list[dict[str, Any]]:
    """Every learner on one seed's split: the setting with the best validation AUC, then its refit."""
    from sklearn.preprocessing import StandardScaler

    from siamese.baselines import pair_features
    from siamese.metrics import auc

    rows = []
    feats = {name: pair_features(getattr(data, name), FEATURES) for name in ("train", "val", "test")}
    scaler = StandardScaler().fit(feats["train"])
    x = {k: scaler.transform(v) for k, v in feats.items()}
    whole = np.vstack([feats["train"], feats["val"]])
    refit_scaler = StandardScaler().fit(whole)
    for name, (grid, make) in learners().items():
        fits = []
        for setting in grid:
            model = make(seed, **setting).fit(x["train"], data.train.y)
            s_val = _score(model, x["val"])
            fits.append((auc(data.val.y, s_val), setting, model, s_val))
        _, setting, model, s_val = max(fits, key=lambda f: f[0])
        refit = make(seed, **setting).fit(refit_scaler.transform(whole), np.concatenate([data.train.y, data.val.y]))
        metrics = _test_metrics(data.val.y, s_val, data.test.y, _score(model, x["test"]),
                                _score(refit, refit_scaler.transform(feats["test"])))
        rows.append({"learner": name, "seed": seed, "setting": setting, **metrics})
        print(f"{name} seed {seed} {_setting(setting)}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()), flush=True)
    return rows


def siamese_row(cfg: Any, data: Any) -> dict[str, Any]:
    """The trial config fit on the split (early stopping on validation), then refit on training + validation
    for the epochs whose weights the split fit kept, without early stopping.

    Raises:
        TrainingFailed: a fit diverged, or the early-stopping monitor has no value for some epoch.
    """
    from omegaconf import OmegaConf

    from siamese import engine
    from siamese.checks import MONITORS
    from siamese.errors import TrainingFailed
    from siamese.model import outputs, scores

    spec = engine.RunSpec.of(cfg)
    fitted = engine.fit(spec, data)
    stop = cfg.training.early_stopping
    ran = len(fitted.history["loss"])
    curve = fitted.history.get(stop.monitor, [])
    if stop.patience is None or not stop.restore_best:  # the split fit kept its last epoch's weights
        best = ran
    elif len(curve) != ran or not np.all(np.isfinite(curve)):
        raise TrainingFailed(f"the split fit's {stop.monitor} is missing or not finite in some epoch: no best epoch to refit to")
    else:
        best = int(np.argmin(curve) if MONITORS[stop.monitor] == "min" else np.argmax(curve)) + 1
    refit_cfg = OmegaConf.merge(cfg, {"training": {"epochs": best, "early_stopping": {"patience": None}}})
    # Validation stays in the data only for the per-epoch logs; nothing is chosen on it in the refit.
    refit = engine.fit(engine.RunSpec.of(refit_cfg), dataclasses.replace(data, train=data.train.concat(data.val)))
    run = lambda model, pairs: scores(outputs(model, pairs.left, pairs.right), spec.kind)  # noqa: E731
    metrics = _test_metrics(data.val.y, run(fitted.model, data.val), data.test.y, run(fitted.model, data.test),
                            run(refit.model, data.test))
    print(f"Siamese seed {spec.seed} (refit: {best} epochs): " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()), flush=True)
    return {"learner": "Siamese (the given trial config)", "seed": spec.seed, "setting": {"epochs": best}, **metrics}


def trial_config_given(overrides: list[str]) -> bool:
    """Whether the overrides set a trial config (any key outside ``data.*``), not only the data's size or
    preprocessing: only then is the Siamese model measured beside the learners."""
    return any(not (k == "data" or k.startswith("data.")) for k in map(override_key, overrides))


def measure(data_name: str, seeds: list[int], overrides: list[str], store: Path,
            with_sklearn: bool = True) -> list[dict[str, Any]]:
    """Every learner (unless ``with_sklearn`` is false) and the Siamese config (when the overrides set one,
    :func:`trial_config_given`) on each seed's split."""
    from siamese import backend
    from siamese.data import load_dataset
    from siamese.errors import ConfigError

    with_siamese = trial_config_given(overrides)
    cfgs = [compose_cfg("train", store, f"data={data_name}", f"seed={s}", "training.verbose=0", *overrides) for s in seeds]
    backend.start_for(cfgs[0])
    from siamese import engine

    for cfg in cfgs:  # every config checked before the first fit
        engine.RunSpec.of(cfg)
        schedule = str(cfg.optimizer.get("schedule", "constant"))
        if schedule != "constant" and with_siamese:
            # cosine runs over training.epochs, plateau watches validation: the refit could not repeat either
            raise ConfigError(f"optimizer.schedule={schedule}: the refit cannot repeat a learning-rate schedule; "
                              "measure the config with optimizer.schedule=constant")
    rows = []
    for seed, cfg in zip(seeds, cfgs):
        data = load_dataset(cfg.data, seed)
        for note in data.notes:  # the columns taken, the split, leakage: as a run prints them
            print(f"seed {seed}: {note}", flush=True)
        if with_sklearn:
            rows += sklearn_rows(data, seed)
        if with_siamese:
            rows.append(siamese_row(cfg, data))
    return rows


COLUMNS = ["data", "learner", "seeds", "val AUC", "test accuracy", "test AUC", "refit: test accuracy",
           "refit: test AUC", "settings chosen (per seed)"]


def table(data_name: str, rows: list[dict[str, Any]]) -> str:
    """Mean ± sd over seeds per learner, in the order measured."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for learner in dict.fromkeys(r["learner"] for r in rows):
        runs = [r for r in rows if r["learner"] == learner]
        col = lambda k: mean_sd([r[k] for r in runs])  # noqa: E731
        chosen = "; ".join(_setting(r["setting"]) for r in runs)
        lines.append(f"| {data_name} | {learner} | {len(runs)} | {col('val_auc')} | {col('test_accuracy')} | "
                     f"{col('test_auc')} | {col('refit_test_accuracy')} | {col('refit_test_auc')} | {chosen} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mrpc-minilm")
    parser.add_argument("--seeds", default=[0, 1, 2], type=listed(int), help="e.g. 0,1,2")
    parser.add_argument("--no-sklearn", action="store_true", help="the Siamese config only")
    parser.add_argument("overrides", nargs="*", help="a trial config (train overrides) to measure beside them")
    args = parser.parse_intermixed_args(argv)  # overrides may come before and after the options
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.error(f"--seeds {','.join(map(str, args.seeds))}: give distinct seeds of 0 or more")
    for key in map(override_key, args.overrides):
        if key in ("seed", "data") or key.split(".")[0] in ("tracking", "hydra"):
            parser.error(f"{key} is set by this benchmark (--seeds, --data, a temporary store): leave it out")
    if args.no_sklearn and not trial_config_given(args.overrides):
        parser.error("--no-sklearn leaves nothing to measure: give a trial config (train overrides outside data.*)")
    from siamese.cli import debug
    from siamese.errors import TrainingFailed, UserError

    try:
        with tempfile.TemporaryDirectory() as store:
            rows = measure(args.data, args.seeds, args.overrides, Path(store), not args.no_sklearn)
    except (UserError, HydraException) as exc:
        print(config_error(exc, args.overrides), file=sys.stderr)
        return 2
    except TrainingFailed as exc:  # one line, as siamese.train says it; the rows so far were printed
        if debug():  # the traceback, as the siamese tools give it
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print()
    print(table(args.data, rows))
    return 0


if __name__ == "__main__":
    run_tool(main)
