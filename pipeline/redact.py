"""One redaction rule for everything pneumo-ops prints, logs or stores.

A secret is the value of any environment variable whose name says it is one (PASSWORD, SECRET,
TOKEN, ACCESS_KEY, API_KEY, AUTH_STRING; not a `..._FILE` naming where one is kept), or the
password part of any URI (`scheme://user:password@host`). Both are replaced by `***` wherever
they appear, so a setting printed in an error, a URI in a traceback or a message in a Prefect
log carries none of them.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote

MASK = "***"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY|AUTH_STRING", re.IGNORECASE)
# scheme://user:password@ — the password stops at the last "@" before the host.
URI_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):(?P<password>[^/\s]+)@")
# Shorter values would mask ordinary words and numbers everywhere; no real secret is this short.
MIN_SECRET_LENGTH = 4


def is_secret_name(name: str) -> bool:
    """A variable that holds a secret; one naming where a secret is kept (`..._FILE`) does not."""
    return bool(SECRET_NAME.search(name)) and not name.upper().endswith(("_FILE", "_PATH"))


def secret_values(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The secrets in `environ` (default: this process's environment), as they may be printed:
    as given, and percent-decoded when they were written inside a URI."""
    environ = os.environ if environ is None else environ
    found = {value for name, value in environ.items() if is_secret_name(name)}
    # "user:password" auth strings (Prefect's): the password alone is a secret too.
    found |= {
        value.split(":", 1)[1]
        for name, value in environ.items()
        if "AUTH_STRING" in name.upper() and ":" in value
    }
    for value in environ.values():
        for match in URI_PASSWORD.finditer(value):
            found |= {match["password"], unquote(match["password"])}
    return frozenset(value for value in found if len(value) >= MIN_SECRET_LENGTH)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with URI passwords and every secret value masked (default: this environment's)."""
    text = URI_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    for secret in sorted(secret_values() if secrets is None else secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class RedactedError(RuntimeError):
    """An error whose message carried a secret: that message masked; the original is its cause
    (so retry rules that look at causes still see it, and logged tracebacks are redacted)."""


P = ParamSpec("P")
R = TypeVar("R")


def redacting(function: Callable[P, R]) -> Callable[P, R]:
    """Re-raise an error whose message holds a secret as a `RedactedError`.

    For tasks: Prefect stores a failed run's error message with its state, outside any log
    handler. Errors without a secret pass through unchanged. Not for flows: Prefect builds a
    flow's parameter model from the annotations, resolved in the wrapper's module.
    """

    @functools.wraps(function)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            message = str(exc)
            clean = redact(message)
            if clean == message:
                raise
            raise RedactedError(f"{type(exc).__name__}: {clean}") from exc

    return guarded


class RedactingFilter(logging.Filter):
    """A handler filter: the record's message and traceback are redacted before any output."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = frozenset(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True


def redact_logs(secrets: Iterable[str] | None = None) -> None:
    """Put a `RedactingFilter` on every handler that exists now (root, library and Prefect
    loggers). Idempotent: a handler already filtered gets the new secrets instead."""
    secrets = secret_values() if secrets is None else frozenset(secrets)
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for handler in {handler for logger in loggers for handler in logger.handlers}:
        present = [f for f in handler.filters if isinstance(f, RedactingFilter)]
        if present:
            present[0].secrets = secrets
        else:
            handler.addFilter(RedactingFilter(secrets))


class RedactingStream:
    """A text stream that redacts what is written, then passes it on; the rest is the inner
    stream's (isatty, encoding, fileno...)."""

    def __init__(self, inner: Any, secrets: Iterable[str]) -> None:
        self.inner, self.secrets = inner, frozenset(secrets)

    def write(self, text: str) -> int:
        self.inner.write(redact(text, self.secrets))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def redact_streams(secrets: Iterable[str] | None = None) -> None:
    """Redact what is written straight to sys.stdout and sys.stderr, past any log handler
    (MLflow writes run links holding the tracking URI there). Idempotent."""
    secrets = secret_values() if secrets is None else frozenset(secrets)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, RedactingStream):
            stream.secrets = secrets
        elif stream is not None:
            setattr(sys, name, RedactingStream(stream, secrets))
