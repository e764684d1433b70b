from pathlib import Path

import pytest

from pipeline.storage import (
    LocalStore,
    ObjectConflictError,
    ObjectNotFoundError,
    put_content_addressed,
    sha256_hex,
)


def test_content_addressed_put_is_idempotent(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    key, first = put_content_addressed(store, b"x-ray", "raw", ".jpeg")
    again_key, second = put_content_addressed(store, b"x-ray", "raw", ".jpeg")
    assert (first, second) == (True, False)
    assert key == again_key == f"raw/{sha256_hex(b'x-ray')[:2]}/{sha256_hex(b'x-ray')}.jpeg"
    assert store.get(key) == b"x-ray"
    assert store.list("raw/") == [key]


def test_put_never_overwrites_different_bytes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("manifests/a.parquet", b"first")
    with pytest.raises(ObjectConflictError, match=r"manifests/a\.parquet"):
        store.put("manifests/a.parquet", b"second")
    assert store.get("manifests/a.parquet") == b"first"


def test_overwrite_is_explicit_for_pointers(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("manifests/LATEST", b"v1")
    assert store.put("manifests/LATEST", b"v2", overwrite=True) is True
    assert store.get("manifests/LATEST") == b"v2"


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../escape", "a/../../b", "folder/"])
def test_invalid_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        LocalStore(tmp_path).put(key, b"x")


def test_missing_object_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError, match="nothing/here"):
        LocalStore(tmp_path).get("nothing/here")
    assert LocalStore(tmp_path / "absent").list() == []
