"""Errors a user can act on. The CLI prints their message as one line and exits with `exit_code`.

Also the masking of secrets in anything shown to a person (:func:`mask_passwords`)."""

from __future__ import annotations

import logging
import re


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


class ForecastIntegrityError(NuruError):
    """A model produced forecasts that must never be published (negative, not finite, or
    outside their own interval): the night is refused, retrying would repeat it."""


# `scheme://user:password@host`: the password runs to the last `@` of the URL (as SQLAlchemy
# reads it), so one with an unescaped `@`, `/` or `#` in it is masked whole.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]*):[^\s'\"]*@(?=[^\s'\"@]*(?:[\s'\"]|$))"
)
_SECRET_PARAMETER = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|secret|token|api_key|apikey|access_key|secret_key"
    r"|signature|x-amz-signature|x-amz-security-token)=)"
    r"[^&;#\s'\"]*",
    re.IGNORECASE,
)
MASK = "***"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def mask_passwords(text: str) -> str:
    """``text`` with the password of every URL in it (``scheme://user:password@host``) and
    every secret query parameter (``?password=…``, ``&token=…``) replaced by ``***``.

    The one masking function for everything a person reads: settings errors, CLI error
    lines, log lines, API error bodies and ``/health`` reasons.
    """
    if "://" not in text and "=" not in text:
        return text
    text = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    return _SECRET_PARAMETER.sub(rf"\g<head>{MASK}", text)


class MaskingFormatter(logging.Formatter):
    """A log formatter that passes every formatted line (message, traceback and all) through
    :func:`mask_passwords`."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_passwords(super().format(record))


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
