"""Checks on the command line's ``+key=value`` / ``++key=value`` overrides that Hydra cannot make:
Hydra adds any key it is given, and a key that nothing reads changes nothing, so a typo such as
``+training.epoch=3`` would run with the setting the user meant to change."""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

from siamese.errors import ConfigError
from siamese.paths import config_dir

CUTOFF = 0.8  # difflib ratio: epoch/epochs 0.91, trainng/training 0.93, head_depth/head_width 0.8


def _paths(node: Any, prefix: str) -> set[str]:
    """Every key path of a YAML mapping (``a``, ``a.b``, …) under ``prefix``."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "defaults":
                continue
            path = f"{prefix}.{key}" if prefix else str(key)
            out |= {path} | _paths(value, path)
    return out


@lru_cache(maxsize=1)
def known_paths() -> frozenset[str]:
    """Every key path some config under ``conf/`` defines: a key one option of a group has and
    another lacks (``data.n_train`` is digits' only; an older model config without
    ``model.head_depth``) is a key the code reads, so adding it is not a typo."""
    root = config_dir()
    known: set[str] = set()
    for path in root.rglob("*.yaml"):
        parts = path.relative_to(root).parts
        if parts[0] == "hydra":
            continue
        text = path.read_text()
        package = "" if len(parts) == 1 or "@package _global_" in text.split("\n", 1)[0] else ".".join(parts[:-1])
        known |= _paths(OmegaConf.to_container(OmegaConf.create(text or "{}")), package)
    return frozenset(known)


def _near(name: str, siblings: list[str]) -> str | None:
    """The sibling ``name`` is most likely a misspelling of (same letters in another case, or close)."""
    for sibling in siblings:
        if sibling.lower() == name.lower():
            return sibling
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=CUTOFF)
    return close[0] if close else None


def command_line() -> list[str]:
    """The command line's config overrides when run by Hydra (none when called as a function)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):
        return []


def check_added_keys(cfg: DictConfig, overrides: list[str]) -> None:
    """Refuse a ``+``/``++`` override whose key no config defines and one of whose parts is spelled
    like the key beside it: ``+training.epoch=3`` (``training.epochs``), ``+trainng.epochs=3``
    (``training``), ``+report.BY=loss`` (``report.by``).

    A key some config defines is never refused, nor one with no near namesake (a keras-tuner oracle
    argument, say): those are the task's to read.

    Raises:
        ConfigError: naming the override and the key it most likely meant.
    """
    added = [o for o in overrides if o.startswith("+")]
    known = known_paths() if added else frozenset()  # conf/ is read only when a key is added
    for override in added:
        key, _, value = override.lstrip("+").partition("=")
        if "@" in key or "/" in key or key in known:  # a group's package or option: Hydra's syntax
            continue
        node: Any = cfg
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not OmegaConf.is_dict(node):
                break
            siblings = [str(k) for k in node.keys() if str(k) != part]
            # only a part no config defines can be a typo (an intermediate key like training.early_stopping is not)
            meant = None if ".".join(parts[: i + 1]) in known else _near(part, siblings)
            if meant is not None and ".".join([*parts[:i], meant]) in known:  # not another added key
                path = ".".join([*parts[:i], meant, *parts[i + 1:]])
                raise ConfigError(f"{override.partition('=')[0]}={value} adds a key that nothing reads, beside "
                                  f"{'.'.join([*parts[:i], meant])}; did you mean {path}={value} (without '+')?")
            node = node.get(part) if part in node else None
