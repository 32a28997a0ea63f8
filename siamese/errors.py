"""Errors a user can fix; entry points turn them into one line on stderr and exit code 2."""


class UserError(Exception):
    """Bad input or configuration: the message names the problem."""


class DataError(UserError):
    """A data file is missing, malformed or inconsistent."""


class ConfigError(UserError):
    """A configuration value is unknown or a combination makes no sense."""


class TrackingError(UserError):
    """The MLflow tracking store cannot be reached or used."""


class TrainingFailed(RuntimeError):
    """Training could not produce a model (it diverged, or every trial of a study failed).

    Not the user's input at fault as such, so entry points exit 1, but with the one-line reason
    and no traceback (``SIAMESE_DEBUG=1`` shows it).
    """
