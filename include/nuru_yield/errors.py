"""Errors a user can act on. The CLI prints their message as one line and exits with `exit_code`."""


class NuruError(Exception):
    """Base class: an expected failure with a message meant for a person, not a traceback."""

    exit_code = 1


class ConfigError(NuruError):
    """A setting is missing or invalid (names the variable)."""

    exit_code = 2


class LakeError(NuruError):
    """The lake cannot be read or written (missing file, unwritable directory, missing bucket)."""


class DatabaseError(NuruError):
    """The predictions database is unreachable or a load failed."""


class DataValidationError(NuruError):
    """Input data failed a validation gate beyond its configured tolerance."""


class MissingInputError(NuruError):
    """An input a step needs does not exist (a date's features, a champion model): the step
    fails at once, since retrying will not create it."""


class TrainingError(NuruError):
    """Training cannot proceed (no labels, too few seasons, unusable training set)."""


class RegistryError(NuruError):
    """The model registry refused an operation (unknown run, model, version or alias)."""


class RegistryUnavailableError(RegistryError):
    """The MLflow tracking server did not answer within its bounded attempts (names the URI):
    a later try may succeed."""


class RunInProgressError(NuruError):
    """Another process is working on the same run date (the message names it): try again
    when it has finished."""

    exit_code = 75  # EX_TEMPFAIL: a temporary condition, try again later


class NoPlotsInProgressError(MissingInputError):
    """A night with nothing to score (no plot-season in progress on the run date): recorded as
    its own outcome, never as a successful run of zero rows."""

    exit_code = 3
