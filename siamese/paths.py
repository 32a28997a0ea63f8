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


def register_resolvers() -> None:
    """Register ``${root:}`` for configs (idempotent)."""
    if not OmegaConf.has_resolver("root"):
        OmegaConf.register_new_resolver("root", lambda: str(project_root()))
