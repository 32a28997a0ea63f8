"""Validation figures for a run: learning curves, ROC, per-class score histogram."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve


def _figure(width: float, height: float, rows: int = 1, cols: int = 1, top: float = 0.88) -> tuple[Figure, np.ndarray]:
    """A figure outside pyplot (no global state, no GUI backend) with a grid of axes.

    Margins are fixed rather than computed by ``tight_layout``, which renders every text once
    more and cost about 0.1 s a figure: a third of a small trial's tracking time.
    """
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(left=0.1 if cols == 1 else 0.07, right=0.9 if cols == 1 else 0.93, bottom=0.14, top=top,
                        wspace=0.35, hspace=0.55)
    return fig, axes


def learning_curves(history: dict[str, list[float]]) -> Figure:
    """Loss and fixed-rule accuracy against epoch, train and validation; epochs count from 0, as
    the runs' metric steps do in MLflow."""
    fig, grid = _figure(10, 4, 1, 2)
    axes = grid[0]
    for ax, key in zip(axes, ("loss", "acc")):
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            if name in history:
                ax.plot(np.arange(len(history[name])), history[name], style, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
        ax.grid(alpha=0.3)
    if "val_auc_epoch" in history:
        twin = axes[1].twinx()
        twin.plot(np.arange(len(history["val_auc_epoch"])), history["val_auc_epoch"], ":", color="k", label="val_auc")
        twin.set_ylabel("val AUC")
        twin.legend(loc="lower right")
    fig.suptitle("Learning curves")
    return fig


def roc(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """ROC curves, one per named split of (labels, scores)."""
    fig, ((ax,),) = _figure(5, 5)
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend()
    ax.set_title("ROC")
    return fig


def score_histogram(y: np.ndarray, s: np.ndarray, threshold: float, title: str = "validation") -> Figure:
    """Score distributions of same and different pairs, with the chosen threshold."""
    fig, ((ax,),) = _figure(6, 4)
    bins = np.histogram_bin_edges(s, bins=40)
    ax.hist(s[y == 1], bins=bins, alpha=0.6, label="same (1)")
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label="different (0)")
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set_xlabel("score (higher = more similar)")
    ax.legend()
    ax.set_title(f"Scores by class ({title})")
    return fig


def objective_by_trial(values: np.ndarray, objective: str, trials: np.ndarray | None = None,
                       direction: str = "max") -> Figure:
    """Each trial's objective by trial number (``trial-07`` is 7, as its run is named), with the
    running best."""
    fig, ((ax,),) = _figure(7, 4, top=0.95)
    x = np.arange(len(values)) if trials is None else np.asarray(trials)
    ax.plot(x, values, "o", label=objective)
    sign = 1.0 if direction == "max" else -1.0
    finite = np.where(np.isfinite(values), sign * values, -np.inf)
    ax.plot(x, sign * np.maximum.accumulate(finite), "-", label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(objective)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def label(value: str, width: int = 10) -> str:
    """A short category label: numbers to 3 significant digits, words cut to ``width``."""
    try:
        return f"{float(value):.3g}"
    except ValueError:
        return value if len(value) <= width else value[: width - 1] + "…"


def objective_vs_params(params: dict[str, "np.ndarray"], values: np.ndarray, objective: str) -> Figure:
    """One panel per hyperparameter: objective against its value. Numbers on a numeric axis (log
    when they span more than a decade), other values as strips of short labels."""
    import pandas as pd

    names = sorted(params)
    cols = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // cols))
    # Room for titles and tick labels is fixed in inches, so few rows leave no blank band.
    fig, axes = _figure(4 * cols, 2.8 * rows + 0.4, rows, cols, top=1 - 0.35 / (2.8 * rows + 0.4))
    fig.subplots_adjust(bottom=0.7 / (2.8 * rows + 0.4), hspace=0.8)
    for ax, name in zip(axes.flat, names):
        raw = pd.Series(params[name]).reset_index(drop=True)
        numeric = pd.to_numeric(raw, errors="coerce")
        if numeric.notna().all():
            ax.plot(numeric, values, "o", alpha=0.7)
            positive = numeric[numeric > 0]
            if len(positive) == len(numeric) and positive.max() / positive.min() > 10:
                ax.set_xscale("log")
        else:
            cats = sorted(raw.fillna("-").astype(str).unique())
            pos = raw.fillna("-").astype(str).map({c: i for i, c in enumerate(cats)})
            ax.plot(pos + np.random.default_rng(0).uniform(-0.1, 0.1, len(pos)), values, "o", alpha=0.7)
            ax.set_xticks(range(len(cats)), [label(c) for c in cats], rotation=30 if len(cats) > 3 else 0, fontsize=8)
            ax.set_xlim(-0.5, len(cats) - 0.5)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(objective, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    return fig
