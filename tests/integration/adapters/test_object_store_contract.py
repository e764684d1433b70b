"""The `ObjectStore` contract, run against every backend: the local folder and S3 (SeaweedFS).

Whatever backend the settings select, the pipeline relies on these promises: content-addressed
writes are idempotent, stored bytes are never overwritten unless asked, keys cannot escape, and
a missing key is an error that names it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from pipeline.adapters.s3 import S3Store
from pipeline.adapters.storage import (
    LocalStore,
    ObjectConflictError,
    ObjectNotFoundError,
    ObjectStore,
    put_content_addressed,
    sha256_hex,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    creds = request.getfixturevalue("s3")
    suffix = secrets.token_hex(4)
    s3 = S3Store(
        creds.endpoint,
        creds.access_key,
        creds.secret_key,
        {"raw": f"raw-{suffix}", "default": f"data-{suffix}"},
    )
    s3.ensure_buckets()
    return s3


def test_content_addressed_put_is_idempotent(store: ObjectStore) -> None:
    key, first = put_content_addressed(store, b"x-ray", "raw", ".jpeg")
    again_key, second = put_content_addressed(store, b"x-ray", "raw", ".jpeg")
    assert (first, second) == (True, False)
    assert key == again_key == f"raw/{sha256_hex(b'x-ray')[:2]}/{sha256_hex(b'x-ray')}.jpeg"
    assert store.get(key) == b"x-ray" and store.exists(key)
    assert store.list("raw/") == [key]


def test_put_never_overwrites_different_bytes(store: ObjectStore) -> None:
    store.put("manifests/a.parquet", b"first")
    with pytest.raises(ObjectConflictError, match=r"manifests/a\.parquet"):
        store.put("manifests/a.parquet", b"second")
    assert store.get("manifests/a.parquet") == b"first"


def test_overwrite_is_explicit_for_pointers(store: ObjectStore) -> None:
    store.put("manifests/LATEST", b"v1")
    assert store.put("manifests/LATEST", b"v2", overwrite=True) is True
    assert store.get("manifests/LATEST") == b"v2"


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../escape", "a/../../b", "folder/"])
def test_invalid_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        store.put(key, b"x")


def test_missing_object_names_the_key(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match="nothing/here"):
        store.get("nothing/here")
    assert not store.exists("nothing/here")
    assert store.list("nothing/") == []


def test_listing_is_sorted_and_by_prefix(store: ObjectStore) -> None:
    for key in ("reports/b.csv", "reports/a.csv", "manifests/m.parquet"):
        store.put(key, key.encode())
    assert store.list("reports/") == ["reports/a.csv", "reports/b.csv"]
    assert store.uri("reports/a.csv").endswith("reports/a.csv")
