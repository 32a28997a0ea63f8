"""Thin Hydra entry points: compose the config, call one plain function, map errors to exit codes.

Exit codes: 0 success, 2 bad input or config (one line on stderr), 130 stopped by Ctrl-C (SIGINT),
143 stopped by SIGTERM (128 + the signal, as a shell reports it; one line each), 1 anything else
(training that diverged, or a study whose every trial failed, also in one line;
``SIAMESE_DEBUG=1`` adds the traceback).
"""

from __future__ import annotations

import io
import os
import sys
import traceback
import warnings
from typing import Any, Callable

import hydra
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from siamese.errors import TrainingFailed, UserError, required_values
from siamese.overrides import check_added_keys, command_line
from siamese.paths import config_dir
from siamese.stops import Stopped, install_stop_handlers


def one_line(report: str) -> str:
    """Hydra's multi-line composition error as one line (first line + available options)."""
    lines = [ln.strip() for ln in report.splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    if not lines:
        return "invalid configuration"
    message = " ".join([lines[0], *(ln for ln in lines[1:] if ln.startswith("Key "))])
    for i, line in enumerate(lines):
        if line.startswith("Available options in"):
            options = []
            for item in lines[i + 1 :]:
                if item.startswith("Config search path"):
                    break
                options.append(item)
            message += f" ({line.rstrip(':').lower()}: {', '.join(options)})"
            break
    return message


def _hydra_message(report: str) -> str:
    """What to print for a config Hydra could not compose: its own message where it shows the fix
    (a caret under the bad character, a quoting hint), else :func:`one_line`."""
    lines = [ln.rstrip() for ln in report.splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    caret = next((i for i, ln in enumerate(lines) if ln.strip() == "^"), None)
    if caret is None and not any("quote the value" in ln for ln in lines):
        return f"error: {one_line(report)}"
    # The caret lines up under the first line, which gains "error: " (7 characters).
    out = [f"error: {lines[0].strip()}", *((" " * 7 + ln if i == caret else ln.strip()) for i, ln in enumerate(lines[1:], 1))]
    if caret is not None:
        out.append("hint: quote the value for Hydra inside shell quotes, e.g. 'data.train=\"/path/with é or ,/x.csv\"'")
    return "\n".join(out)


def did_you_mean(message: str, config_name: str) -> str:
    """A hint for an override of a key the config lacks (``model.distnce=l1``): the closest existing
    key at that level, e.g. `` (did you mean 'model.distance'?)``; for ``+key=…`` of a key that exists,
    to drop the ``+``; empty when nothing is close."""
    import difflib
    import re

    from omegaconf import OmegaConf

    taken = re.search(r"An item is already at '([^']+)'", message)  # +key=value for a key that exists
    if taken:
        return f" ({taken.group(1)} is already a setting: give it without the '+', {taken.group(1)}=…)"
    override, key = re.search(r"Could not override '([^']+)'", message), re.search(r"Key '([^']+)' is not in struct", message)
    if not (override and key):
        return ""
    path, missing = override.group(1).split("."), key.group(1)
    parent = path[: path.index(missing)] if missing in path else path[:-1]
    try:
        node = OmegaConf.select(compose_config(config_name, []), ".".join(parent)) if parent else compose_config(config_name, [])
    except Exception:  # the hint is a courtesy: the error line stands without it
        return ""
    keys = [str(k) for k in node.keys()] if OmegaConf.is_dict(node) else []
    close = difflib.get_close_matches(missing, keys, n=1, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean '{'.'.join([*parent, close[0], *path[len(parent) + 1:]])}'?)"


def debug() -> bool:
    return os.environ.get("SIAMESE_DEBUG", "") not in ("", "0")


def rewrite_argv(argv: list[str], rename: dict[str, str] | None = None, flags: dict[str, str] | None = None,
                 lists: tuple[str, ...] = ()) -> list[str]:
    """Spellings Hydra cannot take as written, turned into overrides it can.

    Args:
        argv: the command line (``argv[0]`` is kept).
        rename: ``key=`` → ``other=``; for ``model=`` where ``model`` is also a config group.
        flags: ``--flag`` → an override, e.g. ``--dry-run`` → ``promote.dry_run=true``.
        lists: keys whose ``a,b`` value is a list here, not a Hydra sweep.
    """
    rename, flags = rename or {}, flags or {}
    out = argv[:1]
    for arg in argv[1:]:
        key, eq, value = arg.partition("=")
        if arg in flags:
            arg = flags[arg]
        elif eq and key in rename:
            arg = f"{rename[key]}={value}"
        elif eq and key in lists and "," in value and not value.startswith(("[", "'", '"')):
            arg = f"{key}=[{value}]"
        out.append(arg)
    return out


def compose_config(config_name: str, overrides: list[str], *, with_hydra: bool = False) -> DictConfig:
    """The config ``python -m siamese.<task> <overrides>`` runs with, for calling a task function
    (``train(cfg)``, ``tune(cfg)``, …) directly: tests, benchmarks, notebooks.

    ``with_hydra=True`` keeps Hydra's own node (``cfg.hydra``: run dirs, the groups chosen).
    """
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=with_hydra)


# What entry() holds while Hydra composes: its stderr output, the real stderr, whether the task began.
_HOLD: dict[str, Any] = {}


def _release_stderr() -> None:
    """Once the task starts: the real stderr back, with what Hydra printed meanwhile (a module-level
    function, so a job pickled to another process finds that process's own state)."""
    if _HOLD.get("started") is False:
        _HOLD["started"] = True
        sys.stderr = _HOLD["real"]
        sys.stderr.write(_HOLD["held"].getvalue())


def entry(task: Callable[[DictConfig], Any], config_name: str, **argv_rules: Any) -> Callable[[], None]:
    """Wrap ``task(cfg)`` as a Hydra app reading ``conf/<config_name>.yaml``.

    ``argv_rules`` are passed to :func:`rewrite_argv` before Hydra reads the command line.
    """
    held = io.StringIO()
    real_stderr = sys.stderr
    _HOLD.update(held=held, real=real_stderr, started=False)

    # Holds no file or buffer itself: a parallel launcher (hydra/launcher=joblib) pickles it.
    def task_function(cfg: DictConfig) -> Any:
        _release_stderr()
        try:
            check_added_keys(cfg, command_line())
            with required_values():  # a ``???`` value not given: one line naming the key
                return task(cfg)
        except (UserError, TrainingFailed) as exc:  # one line; the traceback only with SIAMESE_DEBUG=1
            if debug():
                traceback.print_exc()
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2 if isinstance(exc, UserError) else 1)

    app = hydra.main(version_base=None, config_path=str(config_dir()), config_name=config_name)(task_function)

    def main() -> None:
        if argv_rules:
            sys.argv = rewrite_argv(sys.argv, **argv_rules)
        install_stop_handlers()
        # conf/hydra/launcher/joblib.yaml sets the joblib plugin's own schema (same name): checked
        # against it, as wanted; Hydra warns about that pairing on every multirun.
        warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema", category=UserWarning)
        # Hold what Hydra prints before the task starts: if composition fails, it is condensed.
        sys.stderr = held
        try:
            app()
        except KeyboardInterrupt as exc:
            sys.stderr = real_stderr
            hint = "; run the same command again to resume the study" if config_name == "tune" else ""
            print(f"error: {exc or 'stopped by Ctrl-C'}{hint}", file=sys.stderr)
            sys.exit(exc.code if isinstance(exc, Stopped) else 130)
        except SystemExit as exc:
            # Hydra exits 1 on a config it cannot compose (unknown group option, key not in the
            # config, bad override syntax) before the task starts: that is bad config, code 2.
            if exc.code == 1 and not _HOLD.get("started"):
                sys.stderr = real_stderr
                print(_hydra_message(held.getvalue()) + did_you_mean(held.getvalue(), config_name), file=sys.stderr)
                sys.exit(2)
            raise
        finally:
            if sys.stderr is held:
                sys.stderr = real_stderr
                real_stderr.write(held.getvalue())

    return main
