"""Errors a user can fix; entry points turn them into one line on stderr and exit code 2."""


class UserError(Exception):
    """Bad input or configuration: the message names the problem."""


class DataError(UserError):
    """A data file is missing, malformed or inconsistent."""


class ConfigError(UserError):
    """A configuration value is unknown or a combination makes no sense."""


class TrackingError(UserError):
    """The MLflow tracking store cannot be reached or used."""
