"""The service's error replies and request bounds, on an app with no model loaded (no training:
every check here runs before a model would)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flows.service import create_app
from pipeline.serve.background import ChampionHolder
from pipeline.settings import Settings

LIMIT = 1_000_000


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    empty = ChampionHolder(load=lambda: None, resolve_revision=lambda: None)
    settings = Settings(home=tmp_path, serve_max_request_bytes=LIMIT)
    with TestClient(create_app(settings, holder=empty)) as test_client:
        yield test_client


def test_every_error_has_one_shape(client: TestClient) -> None:
    jpeg_start = b"\xff\xd8\xff"
    too_many = [("files", (f"{i}.jpeg", b"x", "image/jpeg")) for i in range(65)]
    replies = {
        "no file": client.post("/predict"),
        "unknown route": client.get("/no-such-page"),
        "wrong method": client.get("/predict"),
        "bad query": client.post("/explain?raw=maybe", files={"file": ("a.jpeg", jpeg_start)}),
        "too many files": client.post("/predict", files=too_many),
        "not an image": client.post("/predict", files={"file": ("a.jpeg", b"text")}),
        "no model": client.get("/model"),
    }
    statuses = {what: reply.status_code for what, reply in replies.items()}
    assert statuses == {
        "no file": 422, "unknown route": 404, "wrong method": 405, "bad query": 422,
        "too many files": 413, "not an image": 415, "no model": 503,
    }  # fmt: skip
    for what, reply in replies.items():
        body = reply.json()
        assert set(body) == {"error", "image"} and body["error"], (what, body)
    assert replies["not an image"].json()["image"] == "a.jpeg"
    assert "raw" in replies["bad query"].json()["error"]
    assert replies["wrong method"].headers["allow"] == "POST"


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(client: TestClient) -> None:
    reply = client.post("/predict", files={"file": ("a.jpeg", b"\xff\xd8\xff" + bytes(2 * LIMIT))})
    assert reply.status_code == 413
    assert reply.json() == {"error": f"request body over the {LIMIT}-byte limit", "image": None}


def test_a_streamed_body_is_cut_off_once_it_passes_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: only counting can stop it
        for _ in range(50):
            yield b"-" * 100_000

    reply = client.post(
        "/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert reply.status_code == 413 and "byte limit" in reply.json()["error"]


def test_an_upload_without_a_file_name_is_named_as_the_problem(client: TestClient) -> None:
    # An empty file name makes the part a plain form field, not a file: say so, briefly,
    # without echoing the bytes back.
    reply = client.post("/predict", files={"file": ("", b"\xff\xd8\xff" + bytes(5000))})
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert "body.file" in error and "upload" in error.lower() and len(error) < 300


def test_a_request_over_its_time_limit_gets_504_in_the_error_shape() -> None:
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from flows.service import RequestTimeout

    async def slow(_) -> PlainTextResponse:
        await asyncio.sleep(5)
        return PlainTextResponse("too late")

    async def quick(_) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/slow", slow), Route("/quick", quick)])
    with TestClient(RequestTimeout(app, seconds=0.2)) as timed:
        reply = timed.get("/slow")
        assert reply.status_code == 504
        assert reply.json() == {"error": "no answer within 0.2 s; try again later", "image": None}
        assert timed.get("/quick").text == "ok"
