"""Stops by signal: Ctrl-C (SIGINT) and SIGTERM become :class:`Stopped`, raised where the program is,
so open runs end KILLED with the signal as their reason (a bare SIGTERM would leave them RUNNING),
and never where raising it would do harm or be lost."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any


class Stopped(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM; ``code`` is the exit code a shell reports for it (128 + signal)."""

    def __init__(self, signum: int) -> None:
        self.signum, self.code = signum, 128 + signum
        name = signal.Signals(signum).name
        super().__init__("stopped by Ctrl-C (SIGINT)" if signum == signal.SIGINT else f"stopped by signal {name}")


# Raised inside the SQL store's code, a stop could leave a transaction open and the database locked
# for every other process (and the exception itself replaced by "database is locked"): it waits.
_STORE_CODE = ("sqlalchemy", "alembic", "sqlite3", "mlflow.store.db", "mlflow.store.tracking.sqlalchemy_store",
               "mlflow.store.model_registry.sqlalchemy_store")
_pending: set[int] = set()
# The stops already raised, kept: library code with a bare ``except:`` (Keras' loss-structure fallbacks,
# reached while a step is traced) can swallow a Stopped and carry on, and the study then ran to its end
# after Ctrl-C (exit 0, seen once in CI). check() raises it again at the next epoch or trial boundary.
_requested: list[int] = []


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
    _requested.append(signum)
    raise Stopped(signum)


def check() -> None:
    """Raise the stop a signal already asked for, if something between it and the top swallowed it.

    Raises:
        Stopped: SIGINT or SIGTERM arrived earlier in this process.
    """
    if _requested:
        raise Stopped(_requested[0])


def _unraisable(info: Any) -> None:
    """A stop raised in a garbage-collector callback or a ``__del__`` is swallowed by Python (e.g. in
    JAX's gc callback): send the signal again rather than lose it; anything else as Python does."""
    if isinstance(info.exc_value, Stopped):
        _retry(info.exc_value.signum)
    else:
        sys.__unraisablehook__(info)


def install_stop_handlers() -> None:
    """Make SIGINT and SIGTERM raise :class:`Stopped` (main thread only, as Python's handlers are)."""
    _requested.clear()  # a new command in this process (tests run several): no stop asked for yet
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sys.unraisablehook = _unraisable
