"""Thin Hydra entry points: compose the config, call one plain function, map errors to exit codes.

Exit codes: 0 success, 2 bad input or config (one line on stderr), 130 stopped by Ctrl-C (SIGINT),
143 stopped by SIGTERM (128 + the signal, as a shell reports it; one line each), 1 anything else.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from typing import Any, Callable

import hydra
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from siamese.errors import UserError
from siamese.paths import config_dir


def _one_line(report: str) -> str:
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


class Stopped(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM, raised where the program is, so open runs end KILLED with the
    signal as their reason (a bare SIGTERM would leave them RUNNING)."""

    def __init__(self, signum: int) -> None:
        self.signum, self.code = signum, 128 + signum
        name = signal.Signals(signum).name
        super().__init__("stopped by Ctrl-C (SIGINT)" if signum == signal.SIGINT else f"stopped by signal {name}")


# Raised inside the SQL store's code, a stop could leave a transaction open and the database locked
# for every other process (and the exception itself replaced by "database is locked"): it waits.
_STORE_CODE = ("sqlalchemy", "alembic", "sqlite3", "mlflow.store.db", "mlflow.store.tracking.sqlalchemy_store",
               "mlflow.store.model_registry.sqlalchemy_store")
_pending: set[int] = set()


def _in_store_code(frame: Any) -> bool:
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(_STORE_CODE):
            return True
        frame = frame.f_back
    return False


def _resend(signum: int) -> None:
    _pending.discard(signum)
    os.kill(os.getpid(), signum)


def _retry(signum: int) -> None:
    """Send the signal again in 50 ms (one retry at a time)."""
    if signum not in _pending:
        _pending.add(signum)
        retry = threading.Timer(0.05, _resend, (signum,))
        retry.daemon = True
        retry.start()


def _stop(signum: int, frame: Any) -> None:
    """Raise :class:`Stopped` where the program is, unless it is in the store's code: then the
    signal comes again until it lands outside."""
    if _in_store_code(frame):
        _retry(signum)
        return
    raise Stopped(signum)


def _unraisable(info: Any) -> None:
    """A stop raised in a garbage-collector callback or a ``__del__`` is swallowed by Python (e.g. in
    JAX's gc callback): send the signal again rather than lose it; anything else as Python does."""
    if isinstance(info.exc_value, Stopped):
        _retry(info.exc_value.signum)
    else:
        sys.__unraisablehook__(info)


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


def compose_config(config_name: str, overrides: list[str]) -> DictConfig:
    """The config ``python -m siamese.<task> <overrides>`` runs with, for calling a task function
    (``train(cfg)``, ``tune(cfg)``, …) directly: tests, benchmarks, notebooks."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def entry(task: Callable[[DictConfig], Any], config_name: str, **argv_rules: Any) -> Callable[[], None]:
    """Wrap ``task(cfg)`` as a Hydra app reading ``conf/<config_name>.yaml``.

    ``argv_rules`` are passed to :func:`rewrite_argv` before Hydra reads the command line.
    """
    started = False
    held = io.StringIO()
    real_stderr = sys.stderr

    def task_function(cfg: DictConfig) -> Any:
        nonlocal started
        if not started:
            started = True
            sys.stderr = real_stderr
            real_stderr.write(held.getvalue())
        try:
            return task(cfg)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    app = hydra.main(version_base=None, config_path=str(config_dir()), config_name=config_name)(task_function)

    def main() -> None:
        if argv_rules:
            sys.argv = rewrite_argv(sys.argv, **argv_rules)
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        sys.unraisablehook = _unraisable
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
            if exc.code == 1 and not started:
                sys.stderr = real_stderr
                print(f"error: {_one_line(held.getvalue())}", file=sys.stderr)
                sys.exit(2)
            raise
        finally:
            if sys.stderr is held:
                sys.stderr = real_stderr
                real_stderr.write(held.getvalue())

    return main
