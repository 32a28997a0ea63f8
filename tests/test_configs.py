"""Every option of every config group composes with every primary config that uses it, resolves,
and (for studies) gives a search space that parses: a config that breaks fails here in seconds."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from siamese.cli import compose_config, entry
from siamese.errors import ConfigError, UserError, required_values
from siamese.paths import config_dir, project_root
from siamese.search import parse_space

PRIMARY = ["train", "tune", "report", "promote", "predict", "export"]
# Values that must be given (``???`` in conf/): by primary config, and by a group option.
REQUIRED = {"export": {"out"}}
REQUIRED_BY_OPTION = {("data", "csv"): {"data.train", "data.test"}}
# Hydra's own settings live in conf/hydra/ (one option per kind of task), not in the job's config.
NOT_A_JOB_GROUP = {"hydra"}


def groups() -> dict[str, list[str]]:
    """Each config group of conf/ and its options."""
    return {d.name: sorted(f.stem for f in d.glob("*.yaml"))
            for d in sorted(config_dir().iterdir()) if d.is_dir() and d.name not in NOT_A_JOB_GROUP}


def groups_used(config: str) -> set[str]:
    """The groups a primary config's defaults tree chooses from (``experiment: null`` included)."""
    return {g for g in compose_config(config, [], with_hydra=True).hydra.runtime.choices if g in groups()}


CASES = [(config, group, option) for config in PRIMARY for group in sorted(groups_used(config))
         for option in groups()[group]]
# Spaces are written for the presets too (README: experiment=question search=question).
CROSS = [("tune", [f"search={s}", f"experiment={e}"]) for s in groups()["search"] for e in groups()["experiment"]]


def missing_keys(node: Any, prefix: str = "") -> set[str]:
    """Keys whose value is ``???``, without resolving anything."""
    if isinstance(node, dict):
        return set().union(*(missing_keys(v, f"{prefix}{k}.") for k, v in node.items())) if node else set()
    return {prefix[:-1]} if node == "???" else set()


def check(config: str, cfg: DictConfig, required: set[str]) -> None:
    """Resolves; exactly ``required`` is missing, each as a one-line ConfigError; spaces parse."""
    assert missing_keys(OmegaConf.to_container(cfg, resolve=False)) == required
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert resolved["tracking"]["uri"] and "${" not in str(resolved)
    for key in required:
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)} is required: .* {re.escape(key)}=<value>$"):
            with required_values():
                OmegaConf.select(cfg, key, throw_on_missing=True)
    if "search" in cfg:
        params = parse_space(cfg.search.params, cfg)
        assert {p.key for p in params} >= {"model.distance", "loss.name"}
    if "tuner" in cfg:
        assert get_class(cfg.tuner.oracle._target_).__name__.endswith("Oracle")


def test_every_group_is_used_and_every_primary_config_composes():
    used = set().union(*(groups_used(c) for c in PRIMARY))
    assert used == set(groups()), f"groups no primary config uses: {set(groups()) - used}"
    assert {"data", "model", "loss", "optimizer", "training", "tracking", "search", "tuner", "experiment"} <= used
    for config in PRIMARY:
        check(config, compose_config(config, []), REQUIRED.get(config, set()))


@pytest.mark.parametrize("config, group, option", CASES, ids=[f"{c}-{g}={o}" for c, g, o in CASES])
def test_option_composes_resolves_and_parses(config, group, option):
    cfg = compose_config(config, [f"{group}={option}"])
    check(config, cfg, REQUIRED.get(config, set()) | REQUIRED_BY_OPTION.get((group, option), set()))


@pytest.mark.parametrize("config, overrides", CROSS, ids=[" ".join(o) for _, o in CROSS])
def test_spaces_parse_with_presets(config, overrides):
    check(config, compose_config(config, overrides), set())


STAMP = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"


@pytest.mark.parametrize("config", PRIMARY)
def test_hydra_outputs_go_where_they_always_went(config):
    """conf/hydra/: run dirs under experiments/ at the project root, whatever the working directory."""
    h = compose_config(config, [], with_hydra=True).hydra
    root = re.escape(str(project_root()))
    expected_run = rf"{root}/experiments/digits-default-random/hydra/{STAMP}" if config == "tune" else \
        rf"{root}/experiments/hydra/{config}/{STAMP}"
    assert re.fullmatch(expected_run, h.run.dir), h.run.dir
    expected_sweep = {"train": rf"{root}/experiments/hydra/train-multirun/{STAMP}",
                      "tune": rf"{root}/experiments/multirun/{STAMP}"}.get(config, r"multirun/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d")
    assert re.fullmatch(expected_sweep, h.sweep.dir), h.sweep.dir
    assert OmegaConf.to_container(h.sweep)["subdir"] == "${hydra.job.num}"
    assert h.output_subdir == (".hydra" if config in ("train", "tune") else None)
    assert h.job.chdir is False


def run_entry(task, config: str, args: list[str], tmp_path: Path, capsys) -> tuple[int, list[str]]:
    """``python -m siamese.<config> args`` in this process: its exit code and stderr lines."""
    argv, handler = sys.argv, signal.getsignal(signal.SIGTERM)
    sys.argv = [config, *args, f"hydra.run.dir={tmp_path}/hydra", "hydra/job_logging=none",
                "hydra/hydra_logging=none"]
    try:
        with pytest.raises(SystemExit) as exit_:
            entry(task, config)()
    finally:
        sys.argv = argv
        signal.signal(signal.SIGTERM, handler)
    return exit_.value.code, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_missing_required_value_is_one_line_exit_2(tmp_path, capsys):
    from siamese.export import export

    code, err = run_entry(export, "export", [], tmp_path, capsys)
    assert (code, err) == (2, ["error: out is required: set it on the command line, e.g. out=<value>"])
    with pytest.raises(ConfigError, match="out is required"), required_values():
        export(compose_config("export", []))


def test_a_value_interpolating_a_missing_one_names_both():
    cfg = OmegaConf.create({"data": {"root": "???", "train": "${data.root}/train.csv"}})
    with pytest.raises(ConfigError, match=r"^data\.root is required \(by data\.train\): .* data\.root=<value>$"):
        with required_values():
            str(cfg.data.train)


def test_csv_data_without_files_is_one_line_exit_2(tmp_path, capsys):
    from siamese.data import load_dataset
    from siamese.train import train

    store = [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"tracking.artifact_root={tmp_path}/artifacts"]
    with pytest.raises(UserError, match=r"data\.train"), required_values():
        load_dataset(compose_config("train", ["data=csv"]).data, 0)
    code, err = run_entry(train, "train", ["data=csv", "data.test=t.csv", *store], tmp_path, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: data.train"), err
