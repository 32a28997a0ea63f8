"""Search spaces as YAML (``conf/search/*.yaml``) → keras-tuner hyperparameters → trial configs.

A space maps config keys (any key of the composed config, e.g. ``model.dropout``) to a spec::

    model.dropout:  {type: float, min: 0.0, max: 0.5, step: 0.1, default: 0.1}
    optimizer.learning_rate: {type: float, min: 1.0e-4, max: 1.0e-2, sampling: log}
    model.width:    {type: choice, values: [64, 128, 256]}
    model.depth:    {type: int, min: 1, max: 3}
    model.batch_norm: {type: bool}
    training.epochs: {type: fixed, value: 20}
    loss.margin:    {type: float, min: 0.5, max: 2.0, when: {loss.name: [contrastive]}}

``when`` makes a parameter conditional on earlier ones. A key may hold a list of specs with
disjoint ``when`` conditions, for values that depend on another choice (e.g. the distances
allowed with each loss). The whole space is checked before any trial runs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import keras_tuner as kt
import numpy as np
from omegaconf import DictConfig, OmegaConf

from siamese.checks import MARGIN_LOSSES, RULES, check_value
from siamese.errors import ConfigError
from siamese.metrics import choose_thresholds, evaluate

TYPES = ("choice", "int", "float", "bool", "fixed")
SPEC_KEYS = {"type", "values", "value", "min", "max", "step", "sampling", "default", "when"}


@dataclass
class Param:
    """One hyperparameter: the config key it sets and its keras-tuner name (unique)."""

    key: str
    name: str
    spec: dict[str, Any]
    when: dict[str, list[Any]] = field(default_factory=dict)


def _expected_type(value: Any) -> type | None:
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, str):
        return str
    return None


def _type_of(key: str, current: Any) -> type | None:
    """The key's type: its rule's for a number key, else its current value's. A float key whose value
    is now a whole number (4 from a data config) still takes a float range."""
    rule = RULES.get(key)
    return float if rule is not None and rule.kind == "float" else _expected_type(current)


def _check_value(key: str, value: Any, current: Any) -> None:
    """A value must fit the config key's type (its rule's, else its current value's; ints may stand in
    for floats; None-valued keys take anything) and be one the key allows (:func:`siamese.checks.check_value`)."""
    want = _type_of(key, current)
    got = _expected_type(value)
    if want is not None and value is not None and not (want is float and got is int) and want is not got:
        raise ConfigError(f"search space: {key} takes {want.__name__} values (now {current!r}), got {value!r}")
    try:
        check_value(key, value)
    except ConfigError as exc:
        raise ConfigError(f"search space: {exc}") from None


def _check_spec(key: str, spec: dict[str, Any], current: Any) -> None:
    if not isinstance(spec, dict):
        raise ConfigError(f"search space: {key} must be a mapping with a 'type', got {spec!r}")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ConfigError(f"search space: {key} has unknown field(s) {sorted(unknown)}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(f"search space: {key} type {kind!r} is not one of {list(TYPES)}")
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"search space: {key} choice needs a non-empty 'values' list")
        for v in values:
            _check_value(key, v, current)
        if len({type(v) for v in values}) > 1 and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"search space: {key} values mix types: {values}")
    elif kind in ("int", "float"):
        lo, hi = spec.get("min"), spec.get("max")
        if lo is None or hi is None:
            raise ConfigError(f"search space: {key} {kind} needs 'min' and 'max'")
        if kind == "int" and not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)):
            raise ConfigError(f"search space: {key} int range must be integers, got [{lo}, {hi}]")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
            raise ConfigError(f"search space: {key} range must be numbers, got [{lo!r}, {hi!r}]")
        if lo >= hi:
            raise ConfigError(f"search space: {key} range [{lo}, {hi}] is empty")
        if spec.get("sampling", "linear") not in ("linear", "log", "reverse_log"):
            raise ConfigError(f"search space: {key} sampling must be linear or log")
        if spec.get("sampling") == "log" and lo <= 0:
            raise ConfigError(f"search space: {key} log sampling needs min > 0, got {lo}")
        _check_value(key, lo, current)
        _check_value(key, hi, current)
        if kind == "float" and _type_of(key, current) is int:
            raise ConfigError(f"search space: {key} takes int values (now {current!r}); use type int")
    elif kind == "bool":
        _check_value(key, True, current)
    elif "value" not in spec:
        raise ConfigError(f"search space: {key} fixed needs a 'value'")
    else:
        _check_value(key, spec["value"], current)
    if "default" in spec and kind != "fixed":
        _check_value(key, spec["default"], current)


_MISSING = object()


def parse_space(space: Any, cfg: DictConfig) -> list[Param]:
    """Validate a space against the composed config and return its parameters in order.

    Raises:
        ConfigError: unknown key, unknown type, empty range, type mismatch, or a bad ``when``.
    """
    raw = OmegaConf.to_container(space, resolve=True) if not isinstance(space, dict) else space
    if not raw:
        raise ConfigError("search space is empty: give at least one parameter under search.params")
    params: list[Param] = []
    seen: dict[str, Param] = {}
    for key, specs in raw.items():
        current = OmegaConf.select(cfg, key, default=_MISSING)
        if current is _MISSING:
            raise ConfigError(f"search space: unknown config key '{key}'")
        if isinstance(current, (dict, list)) or OmegaConf.is_config(current):
            if isinstance(current, list) or OmegaConf.is_list(current):  # model.width=[64,128] on the command line
                raise ConfigError(f"search space: {key} is given a list, not a single value; the study tries the "
                                  f"space's values for it, so give {key} one value (or none)")
            raise ConfigError(f"search space: '{key}' is a group of settings, not a value")
        variants = specs if isinstance(specs, list) else [specs]
        if not variants:
            raise ConfigError(f"search space: {key} has no spec")
        for i, spec in enumerate(variants):
            _check_spec(key, spec, current)
            when = spec.get("when") or {}
            if not isinstance(when, dict):
                raise ConfigError(f"search space: {key} 'when' must map an earlier key to its values")
            for parent, values in when.items():
                if parent not in seen:
                    raise ConfigError(f"search space: {key} depends on '{parent}', which must come earlier in the space")
                allowed = _possible_values(seen[parent])
                values = values if isinstance(values, list) else [values]
                bad = [v for v in values if allowed is not None and v not in allowed]
                if bad:
                    raise ConfigError(f"search space: {key} 'when' {parent} in {bad}: not a value {parent} can take")
                when[parent] = values
            if len(when) > 1:
                raise ConfigError(f"search space: {key} 'when' may name one parent key (keras-tuner conditions nest on one)")
            if len(variants) > 1 and not when:
                raise ConfigError(f"search space: {key} has several specs; each needs a 'when'")
            name = key if len(variants) == 1 else f"{key}#{i}"
            param = Param(key, name, {k: v for k, v in spec.items() if k != "when"}, when)
            params.append(param)
        seen[key] = params[-1] if len(variants) == 1 else Param(key, key, {"type": "choice", "values": sorted({v for p in params if p.key == key for v in (_possible_values(p) or [])}, key=str)})
    _check_losses(seen, cfg)
    return params


def trial_metrics(distance_head: bool = True) -> list[str]:
    """The metric names a trial logs (an objective must be one), from the functions that make them."""
    y, s = np.array([0.0, 1.0, 0.0, 1.0]), np.array([0.1, 0.9, 0.2, 0.8])
    names = {f"val_{k}" for k in choose_thresholds(y, s)}
    names |= set(evaluate(y, s, "val", 0.5, 0.5, distance=-s if distance_head else None))
    return sorted(names | {"train_seconds", "epochs_run"})  # added by siamese.engine.train_and_record


def _check_losses(seen: dict[str, Param], cfg: DictConfig) -> None:
    """What depends on the losses trials can get: the objective's name, and a margin for contrastive ones.

    Raises:
        ConfigError: an objective no trial logs, or a contrastive loss with no margin.
    """
    losses = _possible_values(seen["loss.name"]) if "loss.name" in seen else None
    losses = losses if losses is not None else [OmegaConf.select(cfg, "loss.name")]
    objective = str(OmegaConf.select(cfg, "search.objective", default="val_auc"))
    if objective not in trial_metrics():
        raise ConfigError(f"search.objective={objective!r} is not a metric a trial logs; use one of {trial_metrics(False)}")
    if objective not in trial_metrics(distance_head=False) and any(n not in MARGIN_LOSSES for n in losses):
        raise ConfigError(f"search.objective={objective} is logged only by distance heads (contrastive losses), "
                          f"but trials can have loss.name in {[n for n in losses if n not in MARGIN_LOSSES]}")
    margin_losses = [n for n in losses if n in MARGIN_LOSSES]
    if margin_losses and "loss.margin" not in seen and OmegaConf.select(cfg, "loss.margin") is None:
        raise ConfigError(f"search space: trials can have loss.name={margin_losses[0]}, but loss.margin is null "
                          f"(loss={OmegaConf.select(cfg, 'loss.name')}): search loss.margin, or set loss.margin=1.0")


def _possible_values(param: Param) -> list[Any] | None:
    spec = param.spec
    if spec["type"] == "choice":
        return list(spec["values"])
    if spec["type"] == "bool":
        return [False, True]
    if spec["type"] == "fixed":
        return [spec["value"]]
    return None


def _define(hp: kt.HyperParameters, p: Param) -> Any:
    s = p.spec
    if s["type"] == "choice":
        return hp.Choice(p.name, s["values"], ordered=False, default=s.get("default"))
    if s["type"] == "int":
        return hp.Int(p.name, s["min"], s["max"], step=s.get("step") or 1, sampling=s.get("sampling", "linear"), default=s.get("default"))
    if s["type"] == "float":
        step = s.get("step")
        # keras-tuner steps by adding: 0.1 × 5 overshoots 0.5 and drops the endpoint (measured: a
        # 0..0.5 dropout never sampled 0.5). Widen the top by a hair and round to the step's digits.
        top = float(s["max"]) + (float(step) * 1e-6 if step else 0.0)
        value = hp.Float(p.name, float(s["min"]), top, step=step, sampling=s.get("sampling", "linear"), default=s.get("default"))
        return round(value, 10) if step else value
    if s["type"] == "bool":
        return hp.Boolean(p.name, default=bool(s.get("default", False)))
    return hp.Fixed(p.name, s["value"])


def declare(hp: kt.HyperParameters, params: list[Param]) -> dict[str, Any]:
    """Declare every parameter on ``hp`` (in order, with conditions) and return the active values by config key.

    A condition on a plain parameter becomes a keras-tuner conditional scope. A condition on a
    key split into several specs has no single keras-tuner parent; it is applied here instead.
    """
    split = {p.key for p in params if p.name != p.key}
    values: dict[str, Any] = {}
    for p in params:
        if not p.when:
            values[p.key] = _define(hp, p)
            continue
        (parent, allowed), = p.when.items()
        if parent in split:
            value = _define(hp, p)
        else:
            with hp.conditional_scope(parent, allowed):
                value = _define(hp, p)
        if values.get(parent, _MISSING) in allowed:
            values[p.key] = value
    return values


def trial_config(cfg: DictConfig, values: dict[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with the trial's values set at their keys."""
    out = copy.deepcopy(cfg)
    for key, value in values.items():
        # The bayesian oracle hands back numpy scalars, which OmegaConf rejects.
        OmegaConf.update(out, key, value.item() if isinstance(value, np.generic) else value, merge=False)
    return out


def short(values: dict[str, Any], width: int = 60) -> str:
    """``dist=l1 loss=bce drop=0.2 …`` for progress lines."""
    parts = []
    for key, value in values.items():
        name = {"model.distance": "dist", "loss.name": "loss", "model.dropout": "drop", "optimizer.name": "opt",
                "optimizer.learning_rate": "lr", "model.output_activation": "out", "training.batch_size": "bs",
                "data.preprocess": "pre"}.get(key, key.split(".")[-1])
        parts.append(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}")
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"
