"""Which failures are retried: only those another attempt may not meet."""

from __future__ import annotations

import sqlite3

import pytest

from pipeline.adapters.backends import is_transient
from pipeline.adapters.registry import RegistryError
from pipeline.adapters.storage import StorageError, StorageUnavailableError
from pipeline.data.steps import DataValidationError


def chained(outer: Exception, cause: Exception) -> Exception:
    try:
        raise outer from cause
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError("refused"),
        TimeoutError("slow"),
        StorageUnavailableError("s3 down after 3 attempts"),
        sqlite3.OperationalError("database is locked"),
        chained(RuntimeError("API request failed"), ConnectionResetError("reset")),
    ],
)
def test_outages_are_retried(exc: Exception) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad image"),
        RegistryError("pneumonia-resnet has no champion to retrain"),
        DataValidationError("critical checks failed"),
        StorageError("bucket name invalid"),
        sqlite3.OperationalError("no such table: runs"),
        FileNotFoundError("no manifest"),
    ],
)
def test_deterministic_failures_are_not(exc: Exception) -> None:
    assert not is_transient(exc)
