"""Which object store the settings select: the local folder (embedded default) or S3."""

from __future__ import annotations

from pipeline.adapters.storage import LocalStore, ObjectStore
from pipeline.settings import Settings


def open_store(settings: Settings) -> ObjectStore:
    """The store the settings select; S3 buckets are created if missing."""
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
    store.ensure_buckets()
    return store
