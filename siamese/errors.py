"""Errors a user can fix; entry points turn them into one line on stderr and exit code 2."""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue


class UserError(Exception):
    """Bad input or configuration: the message names the problem."""


class DataError(UserError):
    """A data file is missing, malformed or inconsistent."""


class ConfigError(UserError):
    """A configuration value is unknown or a combination makes no sense."""


class TrackingError(UserError):
    """The MLflow tracking store cannot be reached or used."""


def _missing_key(exc: Exception) -> str:
    """The key whose value is ``???`` in an OmegaConf error (its message names it)."""
    found = re.search(r"Missing mandatory value: (\S+)", str(exc))
    return found.group(1) if found else str(getattr(exc, "full_key", "") or "a required value")


@contextmanager
def required_values() -> Iterator[None]:
    """Reading a required config value that was not given (``???`` in conf/) raises
    :class:`ConfigError` naming the key and how to set it, instead of OmegaConf's multi-line error.

    A context manager (``with required_values(): task(cfg)``) or a decorator (``@required_values()``).
    """
    try:
        yield
    except (MissingMandatoryValue, InterpolationToMissingValueError) as exc:
        key = _missing_key(exc)
        via = f" (by {exc.full_key})" if exc.full_key and exc.full_key != key else ""
        raise ConfigError(f"{key} is required{via}: set it on the command line, e.g. {key}=<value>") from None


class TrainingFailed(RuntimeError):
    """Training could not produce a model (it diverged, or every trial of a study failed).

    Not the user's input at fault as such, so entry points exit 1, but with the one-line reason
    and no traceback (``SIAMESE_DEBUG=1`` shows it).
    """
