"""What every benchmark shares: configs in a scratch store, timing, memory, tables and results."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from omegaconf import DictConfig

from siamese.cli import compose_config
from siamese.paths import project_root

ROOT = Path(__file__).resolve().parent
# Generated tables and scratch stores (not committed); tests point it elsewhere.
CACHE = Path(os.environ.get("SIAMESE_BENCH_CACHE", project_root() / "experiments" / "bench"))


@dataclass
class Table:
    """One printed table: a title, column names and rows of cells (numbers or text)."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def markdown(self) -> str:
        def cell(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
            return str(v)

        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Target:
    """A target from the issue, the measured value and whether it is met."""

    target: str
    value: str
    met: bool


@dataclass
class Result:
    """What one benchmark writes as JSON and prints."""

    name: str
    quick: bool
    command: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    date: str = ""  # when it finished (YYYY-MM-DD): the README's footer says it, also when re-rendered later

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["machine"] = machine()
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Result":
        """A result read back from its JSON file (to re-render tables without rerunning)."""
        fields = {k: v for k, v in d.items() if k != "machine"}
        fields["tables"] = [Table(**t) for t in d["tables"]]
        fields["targets"] = [Target(**t) for t in d["targets"]]
        return cls(**fields)

    def markdown(self) -> str:
        parts = [t.markdown() for t in self.tables]
        if self.targets:
            parts.append("\n".join(f"- target: {t.target}: **{t.value}** ({'met' if t.met else 'NOT met'})" for t in self.targets))
        if self.notes:
            parts.append("\n".join(f"- {n}" for n in self.notes))
        return "\n\n".join(parts)


def machine() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "backend": keras.backend.backend(), "platform": platform.platform()}


def config_error(exc: Exception, overrides: Sequence[str], config: str = "train") -> str:
    """A config a benchmark tool could not compose as the one ``error: …`` line it prints: the override
    Hydra could not parse named, else Hydra's message condensed as the CLI condenses it (the options of a
    group, the closest key to a misspelt one), else a project error's own line.

    Args:
        exc: what composing (or checking) the config raised.
        overrides: the overrides the tool gave, to find one Hydra cannot parse.
        config: the config composed (``train``), for the closest-key hint.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException

    from siamese.cli import did_you_mean, one_line

    if isinstance(exc, OverrideParseException):
        parser = OverridesParser.create()
        for override in overrides:
            try:
                parser.parse_overrides([override])
            except OverrideParseException as bad:
                why = "; ".join(ln.strip() for ln in str(bad).splitlines() if ln.strip() and not ln.startswith("See http"))
                fix = ("an override is key=value" if "=" not in override else
                       "quote a value holding brackets, commas or '=': key='\"value\"'")
                return (f"error: cannot parse the override '{override}': {why} ({fix}; "
                        "grammar: https://hydra.cc/docs/advanced/override_grammar/basic)")
    if not isinstance(exc, HydraException):
        return f"error: {str(exc).splitlines()[0]}"
    chain, cause = [str(exc)], exc.__cause__
    while cause is not None:  # Hydra keeps the reason (the key not in the config) on the cause
        chain.append(str(cause))
        cause = cause.__cause__
    report = "\n".join(chain)
    return f"error: {one_line(report)}{did_you_mean(report, config)}"


def compose_cfg(config: str, store: Path, *overrides: str) -> DictConfig:
    """A config as the CLI composes it, tracking into ``store``."""
    base = [f"tracking.uri=sqlite:///{store}/mlflow.db", f"tracking.artifact_root={store}/artifacts"]
    return compose_config(config, [*base, *overrides])


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """``with timer() as t: …`` then ``t["s"]`` holds the wall seconds."""
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        out["s"] = time.perf_counter() - t0


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes() -> int:
    """Resident memory of this process now."""
    return _status_kib("VmRSS")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (VmHWM: ``getrusage``'s maxrss would carry the
    parent's high-water mark into a forked child, and the growth cases run as children)."""
    return _status_kib("VmHWM")


def mean_sd(values: list[float]) -> str:
    """``0.7304 ± 0.0041`` (sd over seeds; a single value has none)."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def shared_available(name: str) -> bool:
    """Whether the team's shared data set ``name`` is beside the project."""
    return (project_root().parent / "shared" / "datasets" / name).is_dir()


def write(result: Result, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{result.name}.json"
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(result.to_json(), indent=1, default=str))
    os.replace(tmp, path)
    return path


def tune_in_child(store: Path, name: str, *overrides: str, what: str) -> tuple[float, Any, Any]:
    """Study ``name`` run as a user runs it: a fresh ``python -m siamese.tune`` process in a fresh study
    folder, timed from process start to exit, tracked in ``store``.

    Returns:
        The wall time (s), the study's parent run and its child runs (a frame, :func:`siamese.tracking.children`).

    Raises:
        RuntimeError: the process failed (``what`` names it; its stderr's tail follows).
    """
    from siamese.tracking import Tracker, children

    study_dir = CACHE / "studies" / name
    shutil.rmtree(study_dir, ignore_errors=True)
    args = [f"study={name}", f"study_dir={study_dir}", f"tracking.uri=sqlite:///{store}/mlflow.db",
            f"tracking.artifact_root={store}/artifacts", *overrides]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "siamese.tune", *args], capture_output=True, text=True,
                          cwd=project_root(), env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=7200)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{what} failed: {proc.stderr[-2000:]}")
    parent = Tracker(compose_cfg("tune", store, *args).tracking).find_study(name)
    return wall, parent, children(parent.info.run_id)
