"""S3 object storage through the `minio` SDK: the one module that imports it.

Works with MinIO, SeaweedFS, AWS S3 or any S3-compatible server. Keys are routed to buckets by
their first path segment (`raw/...` to the raw-image bucket, everything else to the data bucket).
Transient failures (connection refused, timeouts, 5xx) are retried with exponential backoff and
then reported with endpoint, bucket and key; credential errors fail at once.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import TypeVar

import urllib3
from minio import Minio
from minio.error import S3Error, ServerError

from pipeline.adapters.storage import (
    ObjectConflictError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    check_key,
    sha256_hex,
)

T = TypeVar("T")
AUTH_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
)
TRANSIENT_CODES = frozenset({"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout"})
MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NotFound"})
SHA_META = "sha256"


class StorageAuthError(StorageError):
    """The endpoint refused the credentials or the request; retrying cannot help."""


class S3Store:
    """An `ObjectStore` over S3 buckets."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        buckets: dict[str, str],
        *,
        secure: bool = False,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 10.0,
    ) -> None:
        if "default" not in buckets:
            raise ValueError("buckets needs a 'default' entry")
        self.endpoint = endpoint
        self.buckets = buckets
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        # urllib3 must not retry on its own: our loop decides, and names what failed.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds * 3),
            retries=False,
            maxsize=8,
        )
        self.client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, http_client=http
        )

    def bucket_for(self, key: str) -> str:
        return self.buckets.get(key.split("/", 1)[0], self.buckets["default"])

    def ensure_buckets(self) -> None:
        """Create missing buckets; fails at once with the bucket's name if that is refused."""
        for bucket in sorted(set(self.buckets.values())):
            try:
                exists = self._call(
                    "check bucket", bucket, "", lambda b=bucket: self.client.bucket_exists(b)
                )
                if not exists:
                    self._call(
                        "create bucket", bucket, "", lambda b=bucket: self.client.make_bucket(b)
                    )
            except ValueError as exc:  # the SDK refuses invalid names before any request
                raise StorageError(
                    f"bucket {bucket!r} at {self.endpoint} cannot be created: {exc}"
                ) from None

    def _call(self, action: str, bucket: str, key: str, fn: Callable[[], T]) -> T:
        where = f"{action} s3://{bucket}/{key} at {self.endpoint}"
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except S3Error as exc:
                if exc.code in MISSING_CODES:
                    raise ObjectNotFoundError(f"no object {key!r} in bucket {bucket!r}") from None
                if exc.code in AUTH_CODES:
                    raise StorageAuthError(
                        f"{where}: refused ({exc.code}): check PNEUMO_S3_ACCESS_KEY, "
                        "PNEUMO_S3_SECRET_KEY and the bucket policy"
                    ) from None
                if exc.code not in TRANSIENT_CODES:
                    raise StorageError(f"{where}: {exc.code}: {exc.message}") from None
                error: Exception = exc
            except (ServerError, urllib3.exceptions.HTTPError, OSError) as exc:
                error = exc
            if attempt < self.attempts:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        raise StorageUnavailableError(
            f"{where}: failed after {self.attempts} attempts: {type(error).__name__}: {error}"
        )

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> bool:
        bucket = self.bucket_for(check_key(key))
        digest = sha256_hex(data)
        if not overwrite:
            existing = self._stored_digest(bucket, key)
            if existing is not None:
                if existing != digest:
                    raise ObjectConflictError(
                        f"object s3://{bucket}/{key} already holds different bytes; not overwritten"
                    )
                return False
        self._call(
            "put",
            bucket,
            key,
            lambda: self.client.put_object(
                bucket, key, io.BytesIO(data), len(data), metadata={SHA_META: digest}
            ),
        )
        return True

    def _stored_digest(self, bucket: str, key: str) -> str | None:
        """sha256 of what `key` holds, or None if nothing; read from metadata, else the bytes."""
        try:
            stat = self._call("stat", bucket, key, lambda: self.client.stat_object(bucket, key))
        except ObjectNotFoundError:
            return None
        metadata = {k.lower(): v for k, v in (stat.metadata or {}).items()}
        recorded = metadata.get(f"x-amz-meta-{SHA_META}")
        return recorded or sha256_hex(self.get(key))

    def get(self, key: str) -> bytes:
        bucket = self.bucket_for(check_key(key))

        def read() -> bytes:
            response = self.client.get_object(bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._call("get", bucket, key, read)

    def exists(self, key: str) -> bool:
        bucket = self.bucket_for(check_key(key))
        try:
            self._call("stat", bucket, key, lambda: self.client.stat_object(bucket, key))
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        buckets = {self.bucket_for(prefix)} if "/" in prefix else set(self.buckets.values())
        keys: list[str] = []
        for bucket in sorted(buckets):
            objects = self._call(
                "list",
                bucket,
                prefix,
                lambda b=bucket: [
                    o.object_name
                    for o in self.client.list_objects(b, prefix=prefix, recursive=True)
                ],
            )
            keys.extend(k for k in objects if self.bucket_for(k) == bucket)
        return sorted(keys)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket_for(key)}/{key}"
