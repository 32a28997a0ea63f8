"""Thin Hydra entry points: compose the config, call one plain function, map errors to exit codes.

Exit codes: 0 success, 2 bad input or config (one line on stderr), 1 anything else.
"""

from __future__ import annotations

import io
import sys
from typing import Any, Callable

import hydra
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


def entry(task: Callable[[DictConfig], Any], config_name: str) -> Callable[[], None]:
    """Wrap ``task(cfg)`` as a Hydra app reading ``conf/<config_name>.yaml``."""
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
        # Hold what Hydra prints before the task starts: if composition fails, it is condensed.
        sys.stderr = held
        try:
            app()
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
