"""Thin Hydra entry points: compose the config, call one plain function, map errors to exit codes.

Exit codes: 0 success, 2 bad input or config (one line on stderr), 1 anything else.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import hydra
from omegaconf import DictConfig

from siamese.errors import UserError
from siamese.paths import config_dir


def entry(task: Callable[[DictConfig], Any], config_name: str) -> Callable[[], None]:
    """Wrap ``task(cfg)`` as a Hydra app reading ``conf/<config_name>.yaml``."""
    started = False

    def task_function(cfg: DictConfig) -> Any:
        nonlocal started
        started = True
        try:
            return task(cfg)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    app = hydra.main(version_base=None, config_path=str(config_dir()), config_name=config_name)(task_function)

    def main() -> None:
        try:
            app()
        except SystemExit as exc:
            # Hydra exits 1 on a config it cannot compose (unknown group option, key not in the
            # config, bad override syntax) before the task starts: that is bad config, code 2.
            if exc.code == 1 and not started:
                sys.exit(2)
            raise

    return main
