"""How the single-question tools (``python -m benchmarks.ceiling`` and the like) end: their exit code, and a
stop by signal as one line. Kept apart from ``benchmarks.common``, which the accuracy benchmark's
fingerprint reads: a change here changes no benchmark figure."""

from __future__ import annotations

import sys
import traceback
from typing import Callable, NoReturn


def run_tool(main: Callable[[], int]) -> NoReturn:
    """Run a single-question tool's ``main`` and exit with its code; Ctrl-C or SIGTERM ends it with one
    ``error: stopped by …`` line and the shell's code for the signal (130 for Ctrl-C) instead of a traceback.

    These tools print their table at the end and keep nothing between runs (each trains into a
    temporary store, removed on the way out), so a stop loses only that run's unprinted rows.
    ``SIAMESE_DEBUG=1`` gives the traceback, as the ``siamese`` tools do.

    Args:
        main: the tool's ``main()``, returning its exit code.
    """
    from siamese.cli import debug
    from siamese.stops import Stopped, install_stop_handlers

    install_stop_handlers()  # SIGTERM as Ctrl-C: runs end KILLED, the temporary store is removed
    try:
        code = main()
    except KeyboardInterrupt as exc:
        if debug():  # the traceback, and still the signal's exit code
            traceback.print_exc()
        # As the siamese tools say it (siamese.cli): "error: stopped by …" and what to do.
        print(f"error: {exc or 'stopped by Ctrl-C (SIGINT)'}; nothing was kept (the rows printed above had "
              "finished): run the same command again to measure it all", file=sys.stderr)
        code = exc.code if isinstance(exc, Stopped) else 130
    sys.exit(code)
