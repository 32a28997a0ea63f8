"""Allowed values of every run setting, checked at the edge, before any run opens.

:func:`check_config` checks a composed run config (:meth:`siamese.engine.RunSpec.of` calls it);
:func:`check_value` checks one value of one key, and a search space's choices, fixed values and
range ends go through it too (:mod:`siamese.search`), so a space cannot offer a value a run refuses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from siamese.data import PREPROCESSING
from siamese.data.files import DECIMAL_NAMES, SEPARATOR_NAMES, SEPARATORS
from siamese.errors import ConfigError
from siamese.feed import FEEDS
from siamese.losses import LOSS_TARGET
from siamese.model import ACTIVATIONS, DISTANCES, OPTIMIZERS, OUTPUT_ACTIVATIONS

MONITORS = {"val_loss": "min", "val_acc": "max", "val_auc_epoch": "max", "loss": "min"}
MARGIN_LOSSES = tuple(name for name, target in LOSS_TARGET.items() if target == "distance")


@dataclass(frozen=True)
class Rule:
    """What one setting takes: ``kind`` is int, float, bool or choice; bounds are inclusive unless open."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[Any, ...] = ()
    nullable: bool = False

    def describe(self) -> str:
        """``an integer ≥ 1``, ``a number in [0, 1)``, ``true or false``, …"""
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        if self.kind == "bool":
            return "true or false"
        what = "an integer" if self.kind == "int" else "a number"
        if self.lo is not None and self.hi is not None:
            bounds = f" in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            bounds = f" {'>' if self.lo_open else '≥'} {self.lo:g}"
        else:
            bounds = ""
        return what + bounds + (" (or null)" if self.nullable else "")

    def allows(self, value: Any) -> bool:
        """Whether ``value`` is one this setting takes."""
        if value is None:
            return self.nullable
        if self.kind == "choice":
            return any(value == c and type(value) is type(c) for c in self.choices)
        if self.kind == "bool":
            return isinstance(value, bool)
        numeric = (int,) if self.kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric) or not math.isfinite(value):
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        return not (self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)))


def _int(lo: int, nullable: bool = False) -> Rule:
    return Rule("int", lo=lo, nullable=nullable)


def _choice(values: Any, nullable: bool = False) -> Rule:
    return Rule("choice", choices=tuple(values), nullable=nullable)


BOOL = Rule("bool")
RULES: dict[str, Rule] = {
    "data.implied_pairs": Rule("float", 0.0),  # before training.implied_pairs, which takes its value
    "model.depth": _int(1), "model.width": _int(1), "model.head_width": _int(1),
    "model.embedding_dim": _int(1, nullable=True),
    "model.dropout": Rule("float", 0.0, 1.0, hi_open=True),
    "model.distance": _choice(DISTANCES), "model.output_activation": _choice(OUTPUT_ACTIVATIONS),
    "model.activation": _choice(ACTIVATIONS),
    "model.batch_norm": BOOL, "model.normalize_embedding": BOOL, "model.residual": BOOL,
    "model.input_dropout": Rule("float", 0.0, 1.0, hi_open=True), "model.input_noise": Rule("float", 0.0),
    "model.l2": Rule("float", 0.0), "model.head_depth": _int(1),
    "loss.label_smoothing": Rule("float", 0.0, 1.0, hi_open=True, nullable=True),
    "loss.name": _choice(LOSS_TARGET), "loss.margin": Rule("float", 0.0, lo_open=True, nullable=True),
    "optimizer.name": _choice(OPTIMIZERS), "optimizer.learning_rate": Rule("float", 0.0, lo_open=True),
    "optimizer.weight_decay": Rule("float", 0.0),
    "training.epochs": _int(1), "training.batch_size": _int(1), "training.steps_per_execution": _int(1),
    "training.early_stopping.patience": _int(0, nullable=True),
    "training.early_stopping.monitor": _choice(MONITORS), "training.early_stopping.restore_best": BOOL,
    "training.feed": _choice(FEEDS), "training.swap_augment": BOOL, "training.implied_pairs": Rule("float", 0.0), "training.verbose": _choice((0, 1, 2)),
    "training.jit_compile": _choice(("auto", True, False)),
    "data.val_fraction": Rule("float", 0.0, 1.0, lo_open=True, hi_open=True),
    "data.min_class_count": _int(1), "data.shuffle": BOOL, "data.preprocess": _choice(PREPROCESSING),
    "data.sep": _choice((*SEPARATORS, *SEPARATOR_NAMES), nullable=True), "data.decimal": _choice((".", ",", *DECIMAL_NAMES), nullable=True),
}


_ABSENT = object()


def _shown(value: Any, text: Callable[[Any], str] = str) -> str:
    """A config value as the command line writes it: ``[64,128]``, ``{a:1}``, ``true``, ``null``, not
    Python's ``True`` / ``None``; other scalars through ``text``."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    if isinstance(value, list):
        return "[" + ",".join(_shown(v, text) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_shown(v, text)}" for k, v in value.items()) + "}"
    return {True: "true", False: "false"}[value] if isinstance(value, bool) else "null" if value is None else text(value)


def check_value(key: str, value: Any) -> None:
    """One value for one config key (keys without a rule take anything).

    Raises:
        ConfigError: ``key=value is not one of […]`` or ``key=value must be an integer ≥ 1``.
    """
    rule = RULES.get(key)
    if rule is None or rule.allows(value):
        return
    shown = _shown(value, repr)  # 'l3' quoted, as the choices list shows it
    if rule.kind == "choice":
        raise ConfigError(f"{key}={shown} is not one of {list(rule.choices)}")
    raise ConfigError(f"{key}={shown} must be {rule.describe()}")


def check_config(cfg: DictConfig) -> None:
    """Every setting of a run config that has a rule, and the combinations values alone cannot show.

    Raises:
        ConfigError: the first setting a run could not use, naming the key, the value and what it takes.
    """
    for key in RULES:
        parent = key.rpartition(".")[0]
        group = OmegaConf.select(cfg, parent, default=_ABSENT) if "." in parent else _ABSENT
        if group is not _ABSENT and not OmegaConf.is_dict(group):  # training.early_stopping=5
            children = sorted(k.rpartition(".")[2] for k in RULES if k.startswith(parent + "."))
            raise ConfigError(f"{parent}={_shown(group)} must be a group of settings ({', '.join(children)}), "
                              f"not a value; set one of them, e.g. {parent}.{children[0]}=…")
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue  # a config without this key (e.g. an older data config): the code's default
        if OmegaConf.is_config(value):
            raise ConfigError(f"{key}={_shown(value)} must be a single value, not a "
                              f"{'list' if OmegaConf.is_list(value) else 'mapping'}; to try several values, search "
                              f"them (python -m siamese.tune, a space under conf/search/)")
        check_value(key, value)
    if cfg.loss.name in MARGIN_LOSSES and cfg.loss.get("margin") is None:
        raise ConfigError(f"loss.margin is null but loss={cfg.loss.name} needs a margin > 0 (e.g. loss.margin=1.0)")
    ignore = cfg.data.get("ignore")
    if ignore is not None and not (OmegaConf.is_list(ignore) and all(isinstance(c, str) for c in ignore)):
        raise ConfigError(f"data.ignore must be a list of column names, e.g. data.ignore=[id,text], got {ignore!r}")
