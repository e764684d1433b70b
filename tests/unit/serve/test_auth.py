"""API keys: hashed at rest, checked before a body is read, /health open."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flows.service import create_app
from pipeline.serve.auth import hash_key, key_matches, new_key, read_key_hashes
from pipeline.serve.background import ChampionHolder
from pipeline.settings import Settings


@pytest.fixture
def key_and_client(tmp_path: Path):
    key = new_key()
    keys = tmp_path / "keys"
    keys.write_text(f"# reviewers\n{hash_key(key)}\n\n{hash_key(new_key())}  # CI\n")
    empty = ChampionHolder(load=lambda: None, resolve_revision=lambda: None)
    settings = Settings(home=tmp_path, serve_api_keys_file=keys)
    with TestClient(create_app(settings, holder=empty)) as client:
        yield key, client


def test_keys_are_random_and_only_their_hash_matches(tmp_path: Path) -> None:
    key = new_key()
    assert key != new_key() and len(key) > 40
    assert key_matches(key, {hash_key(key)}) and not key_matches(key, {hash_key(new_key())})
    assert not key_matches(hash_key(key), {hash_key(key)})  # the stored hash is not a key


def test_a_keys_file_with_a_plain_key_is_refused_with_its_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{hash_key(new_key())}\n{new_key()}\n")
    with pytest.raises(ValueError, match=r"line 2: not a key hash"):
        read_key_hashes(keys)
    keys.write_text("# nothing yet\n")
    with pytest.raises(ValueError, match="no key hash"):
        read_key_hashes(keys)
    with pytest.raises(ValueError, match="cannot be read"):
        read_key_hashes(tmp_path / "missing")


def test_protected_routes_need_a_known_key_and_health_stays_open(key_and_client) -> None:
    key, client = key_and_client
    assert client.get("/health").status_code == 503  # open: no model, but no 401
    assert client.get("/").status_code == 200 and client.get("/openapi.json").status_code == 200
    for headers in ({}, {"Authorization": "Bearer pk_wrong"}, {"X-API-Key": hash_key(key)}):
        for method, path in (("get", "/model"), ("post", "/predict"), ("get", "/metrics")):
            reply = getattr(client, method)(path, headers=headers)
            assert reply.status_code == 401, (path, headers)
            assert reply.headers["www-authenticate"] == "Bearer"
            assert set(reply.json()) == {"error", "image"}
    assert client.get("/model", headers={"Authorization": f"Bearer {key}"}).status_code == 503
    assert client.get("/metrics", headers={"X-API-Key": key}).status_code == 200


def test_an_unauthenticated_body_is_not_read(key_and_client) -> None:
    _, client = key_and_client
    chunks = []

    def body():
        for _ in range(50):
            chunks.append(1)
            yield b"x" * 100_000

    reply = client.post("/predict", content=body(), headers={"content-type": "image/jpeg"})
    assert reply.status_code == 401 and len(chunks) <= 1
