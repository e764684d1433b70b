"""Which object store the settings select (the local folder, embedded default, or S3), and
which failures of the backends are worth a retry."""

from __future__ import annotations

import sqlite3

from pipeline.adapters.registry import is_transient_registry_error
from pipeline.adapters.storage import LocalStore, ObjectStore, StorageUnavailableError
from pipeline.settings import Settings


def open_store(settings: Settings, create_buckets: bool = True) -> ObjectStore:
    """The store the settings select; S3 buckets are created if missing (unless not asked to:
    then nothing is sent to the store until the first read or write)."""
    if settings.storage == "local":
        return LocalStore(settings.store_dir)
    # Imported here so the embedded default never loads the minio SDK.
    from pipeline.adapters.s3 import S3Store

    store = S3Store(
        settings.s3_endpoint,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        {"raw": settings.s3_bucket_raw, "default": settings.s3_bucket_data},
        secure=settings.s3_secure,
    )
    if create_buckets:
        store.ensure_buckets()
    return store


def is_transient(exc: BaseException) -> bool:
    """True for failures another attempt may not meet: network, 5xx, a locked database.

    Anything else (bad data, a missing champion, a refused request) fails the same way again,
    so it ends the run at once. The exception's causes are searched too.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError | StorageUnavailableError):
            return True
        if isinstance(current, sqlite3.OperationalError) and "locked" in str(current):
            return True
        if is_transient_registry_error(current) or _is_http_client_outage(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_http_client_outage(exc: BaseException) -> bool:
    """requests/urllib3/httpx connection and timeout errors (they do not subclass the builtins)."""
    module = type(exc).__module__.split(".")[0]
    name = type(exc).__name__
    return module in {"requests", "urllib3", "httpx", "httpcore"} and (
        "Connect" in name or "Timeout" in name or name in {"MaxRetryError", "ProtocolError"}
    )
