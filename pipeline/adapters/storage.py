"""Object storage: one small interface, a local-folder backend as the embedded default.

Raw images and manifests are written content-addressed (the key carries the sha256), so a re-run
stores nothing twice and an object, once written, never changes. The S3 backend
(`pipeline.adapters.s3`) implements the same `ObjectStore` protocol; `pipeline.adapters.backends`
picks one from the settings.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Protocol

from pipeline.errors import PneumoError


class StorageError(PneumoError):
    """Base class for object storage failures."""


class ObjectConflictError(StorageError):
    """A key already holds different bytes; writing would lose what is stored."""


class ObjectNotFoundError(StorageError):
    """The key holds no object."""


class StorageUnavailableError(StorageError):
    """The store did not answer usefully after every retry (network, 5xx): worth a later try."""


class ObjectStore(Protocol):
    """What the pipeline needs from an object store."""

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> bool:
        """Store `data` at `key`; True if written, False if the same bytes were already there.

        Raises ObjectConflictError when `key` holds other bytes, unless `overwrite` (only for
        small pointer objects such as "latest manifest").
        """
        ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]: ...

    def uri(self, key: str) -> str:
        """A location a person or another tool can open (file path, s3:// URI)."""
        ...


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_key(prefix: str, digest: str, suffix: str = "") -> str:
    """Key for content-addressed objects; two hex characters of fan-out keep folders small."""
    return f"{prefix}/{digest[:2]}/{digest}{suffix}"


def put_content_addressed(
    store: ObjectStore, data: bytes, prefix: str, suffix: str = ""
) -> tuple[str, bool]:
    """Store `data` under its sha256; returns (key, newly_written)."""
    key = content_key(prefix, sha256_hex(data), suffix)
    return key, store.put(key, data)


def check_key(key: str) -> str:
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or key.endswith("/"):
        raise ValueError(f"invalid object key {key!r}: must be a relative path without '..'")
    return key


class LocalStore:
    """Objects as files under a root folder (the embedded default)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> bool:
        path = self._path(key)
        if path.exists() and not overwrite:
            return self._same_or_conflict(key, path, data)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write aside, then link/replace: readers never see half a file, and `link` fails
        # instead of overwriting when another writer got there first.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            if overwrite:
                Path(tmp).replace(path)
                return True
            try:
                os.link(tmp, path)
            except FileExistsError:
                return self._same_or_conflict(key, path, data)
            return True
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _same_or_conflict(self, key: str, path: Path, data: bytes) -> bool:
        if path.read_bytes() != data:
            raise ObjectConflictError(
                f"object {key!r} in {self.root} already holds different bytes; not overwritten"
            )
        return False

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object {key!r} in {self.root}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.exists():
            return []
        keys = (
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )
        return sorted(k for k in keys if k.startswith(prefix))

    def uri(self, key: str) -> str:
        return str(self._path(key).resolve())
