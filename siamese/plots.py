"""Validation figures for a run: learning curves, ROC, per-class score histogram."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def learning_curves(history: dict[str, list[float]]) -> Figure:
    """Loss and fixed-rule accuracy against epoch, train and validation."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "acc")):
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            if name in history:
                ax.plot(np.arange(1, len(history[name]) + 1), history[name], style, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
        ax.grid(alpha=0.3)
    if "val_auc_epoch" in history:
        twin = axes[1].twinx()
        twin.plot(np.arange(1, len(history["val_auc_epoch"]) + 1), history["val_auc_epoch"], ":", color="k", label="val_auc")
        twin.set_ylabel("val AUC")
        twin.legend(loc="lower right")
    fig.suptitle("Learning curves")
    fig.tight_layout()
    return fig


def roc(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """ROC curves, one per named split of (labels, scores)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend()
    ax.set_title("ROC")
    fig.tight_layout()
    return fig


def score_histogram(y: np.ndarray, s: np.ndarray, threshold: float, title: str = "validation") -> Figure:
    """Score distributions of same and different pairs, with the chosen threshold."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(s, bins=40)
    ax.hist(s[y == 1], bins=bins, alpha=0.6, label="same (1)")
    ax.hist(s[y == 0], bins=bins, alpha=0.6, label="different (0)")
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set_xlabel("score (higher = more similar)")
    ax.legend()
    ax.set_title(f"Scores by class ({title})")
    fig.tight_layout()
    return fig


def objective_by_trial(values: np.ndarray, objective: str) -> Figure:
    """Each trial's objective in run order, with the running best."""
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(1, len(values) + 1)
    ax.plot(x, values, "o", label=objective)
    finite = np.where(np.isfinite(values), values, -np.inf)
    ax.plot(x, np.maximum.accumulate(finite), "-", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def objective_vs_params(params: dict[str, "np.ndarray"], values: np.ndarray, objective: str) -> Figure:
    """One panel per hyperparameter: objective against its value (categories as strips)."""
    import pandas as pd

    names = sorted(params)
    cols = 3
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        raw = pd.Series(params[name]).reset_index(drop=True)
        numeric = pd.to_numeric(raw, errors="coerce")
        if numeric.notna().all() and raw.nunique() > 3:
            ax.plot(numeric, values, "o", alpha=0.7)
        else:
            cats = sorted(raw.fillna("-").astype(str).unique())
            pos = raw.fillna("-").astype(str).map({c: i for i, c in enumerate(cats)})
            ax.plot(pos + np.random.default_rng(0).uniform(-0.1, 0.1, len(pos)), values, "o", alpha=0.7)
            ax.set_xticks(range(len(cats)), cats, rotation=30, fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(objective, fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
