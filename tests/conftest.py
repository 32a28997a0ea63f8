"""Shared fixtures: configs composed from conf/ into a tmp MLflow store, small real data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from omegaconf import DictConfig

from siamese.data import build_digits
from siamese.cli import compose_config
from siamese.paths import project_root

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Small enough for seconds per run, large enough that a broken model shows.
SMALL = ["++data.n_train=600", "++data.n_test=200", "training.epochs=2", "training.verbose=0"]


@pytest.fixture(scope="session")
def digits_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("digits-cache")


def tracking_overrides(store: Path) -> list[str]:
    return [f"tracking.uri=sqlite:///{store}/mlflow.db", f"tracking.artifact_root={store}/artifacts"]


def compose_cfg(store: Path, digits_cache: Path, *overrides: str, config: str = "train") -> DictConfig:
    """A config as the CLI composes it, writing to ``store`` and reading digits from ``digits_cache``."""
    base = [*tracking_overrides(store), f"++data.cache_dir={digits_cache}"]
    return compose_config(config, [*base, *overrides])


@pytest.fixture(scope="session")
def empty_store_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables made: making them takes seconds, copying the file none."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(tmp_path: Path, empty_store_db: Path) -> Path:
    """A fresh, empty MLflow store for one test (``mlflow.db`` + ``artifacts/``)."""
    folder = tmp_path / "mlruns"
    folder.mkdir()
    shutil.copyfile(empty_store_db, folder / "mlflow.db")
    return folder


@pytest.fixture
def make_cfg(store: Path, digits_cache: Path) -> Callable[..., DictConfig]:
    """Compose a config as the CLI would, writing to a tmp store and a shared digits cache."""

    def _make(*overrides: str, config: str = "train", small: bool = True) -> DictConfig:
        return compose_cfg(store, digits_cache, *(SMALL if small else []), *overrides, config=config)

    return _make


@pytest.fixture(scope="session")
def digits_files(digits_cache: Path) -> tuple[Path, Path]:
    return build_digits(digits_cache, seed=0, n_train=600, n_test=200)


@pytest.fixture
def digits_frame(digits_files: tuple[Path, Path]) -> pd.DataFrame:
    return pd.read_csv(digits_files[0])


def run_cli(module: str, *args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python -m siamese.<module>`` as a user would, from a foreign working directory."""
    return subprocess.run(
        [sys.executable, "-m", f"siamese.{module}", *args],
        cwd=Path("/tmp") if Path("/tmp").is_dir() else project_root(),
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )


def random_pairs(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    left = rng.normal(size=(n, dim)).astype(np.float32)
    y = rng.integers(0, 2, n).astype(np.float32)
    right = np.where(y[:, None] == 1, left + 0.3 * rng.normal(size=(n, dim)), rng.normal(size=(n, dim))).astype(np.float32)
    return left, right, y
