"""Where the project lives, so every job writes to one store whatever its working directory."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def project_root() -> Path:
    """The project root: ``$SIAMESE_HOME``, else the checkout holding this package, else the cwd."""
    env = os.environ.get("SIAMESE_HOME")
    if env:
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").exists() and (checkout / "conf").is_dir():
        return checkout
    return Path.cwd().resolve()


def config_dir() -> Path:
    """The folder of Hydra configs."""
    return project_root() / "conf"


def resolve(path: str | os.PathLike) -> Path:
    """An absolute path; relative ones are taken against the directory the user ran from.

    Hydra >= 1.2 does not change directory, so the cwd is the user's.
    """
    return Path(os.path.expanduser(str(path))).resolve()


def artifact_root_for(uri: str) -> str | None:
    """Where a store's artifacts go by default: ``<db folder>/artifacts`` beside a SQLite store,
    so one store's files never land in another's folder; ``None`` otherwise (an HTTP server's own
    artifact root, or MLflow's default)."""
    if uri.startswith("sqlite:///"):
        return str(Path(uri[len("sqlite:///") :]).parent / "artifacts")
    return None


def register_resolvers() -> None:
    """Register ``${root:}`` and ``${artifacts_beside:<uri>}`` for configs (idempotent)."""
    if not OmegaConf.has_resolver("root"):
        OmegaConf.register_new_resolver("root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("artifacts_beside"):
        OmegaConf.register_new_resolver("artifacts_beside", artifact_root_for)
