"""The prediction service with a real model trained on tiny data (FastAPI TestClient)."""

from __future__ import annotations

import hashlib
import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import SAMPLE, bad_crc_png
from tests.e2e.conftest import Trained, champion_of
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

IMAGES = (
    sorted((SAMPLE / "test" / "PNEUMONIA").iterdir())[:2]
    + sorted((SAMPLE / "test" / "NORMAL").iterdir())[:1]
)


@pytest.fixture(scope="module")
def client(trained: Trained):
    from fastapi.testclient import TestClient

    from flows.service import create_app
    from pipeline.settings import Settings

    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            **trained.env,
            "PNEUMO_SERVE_POLL_SECONDS": "0.5",
            "PNEUMO_SERVE_MAX_UPLOAD_BYTES": "3000000",
        }.items():
            env.setenv(key, value)
        with TestClient(create_app(Settings())) as test_client:
            yield test_client


def state(client):
    return client.app.state.service


def upload(path: Path, field: str = "file") -> dict:
    return {field: (path.name, path.read_bytes(), "image/jpeg")}


def test_health_and_model_describe_the_champion(client, registry) -> None:
    from pipeline.adapters.registry import threshold_of

    serving = state(client).holder.current.version
    found = registry.client.get_model_version("pneumonia-resnet", serving)
    tags = found.tags
    health = client.get("/health").json()
    assert health == {
        "status": "ready",
        "model": "pneumonia-resnet",
        "version": serving,
        "weights_source": tags["weights_source"],
        "inference_log": {**health["inference_log"], "status": "ok", "lost_rows": 0},
        "shadow": None,
    }
    model = client.get("/model").json()
    assert model["version"] == serving and model["alias"] == "champion"
    assert model["weights_source"] == tags["weights_source"] and len(model["manifest_id"]) == 16
    assert 0 <= model["metrics"]["roc_auc"] <= 1
    # The threshold in force: the registered one, or a site's once `site accept` ran.
    assert model["threshold"] == pytest.approx(threshold_of(found))
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_the_champions_model_card_is_served(client, registry) -> None:
    serving = state(client).holder.current
    page = client.get("/model/card")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"Model card: pneumonia-resnet v{serving.version}" in page.text
    markdown = client.get("/model/card", params={"format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    stored = registry.read_run_file(serving.run_id, "model_card/model_card.md").decode()
    assert markdown.text == stored


def test_predictions_match_batch_inference(client) -> None:
    from pipeline.predict.scoring import predict_batch

    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in IMAGES]
    served = client.post("/predict", files=files).json()["predictions"]
    champion = state(client).holder.current
    batch, _ = predict_batch(champion, [(p.name, p.read_bytes()) for p in IMAGES], 40_000_000)
    assert [s["image"] for s in served] == list(batch["image"])
    np.testing.assert_allclose([s["probability"] for s in served], batch["probability"], atol=1e-5)
    assert [s["label"] for s in served] == list(batch["label"])
    assert all(
        s["version"] == champion.version and s["alias"] == "champion" and s["latency_ms"] > 0
        for s in served
    )
    single = client.post("/predict", files=upload(IMAGES[0])).json()["predictions"]
    assert len(single) == 1 and single[0]["probability"] == pytest.approx(
        served[0]["probability"], abs=1e-5
    )


def test_explain_returns_an_overlay_of_the_input_size(client) -> None:
    response = client.post("/explain", files=upload(IMAGES[0]))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == Image.open(IMAGES[0]).size
    raw = client.post("/explain?raw=true", files=upload(IMAGES[0])).json()
    heatmap = np.asarray(raw["heatmap"])
    side = state(client).holder.current.model.input_shape[1]  # the model's input resolution
    assert heatmap.shape == (side, side) and heatmap.min() >= 0 and heatmap.max() <= 1


def test_explain_output_is_bounded_whatever_the_upload(client) -> None:
    # A flat 6,000 x 4,500 px film (27 Mpx, under the pixel limit) in a small PNG.
    big = io.BytesIO()
    Image.new("L", (6000, 4500), 90).save(big, "PNG")
    response = client.post("/explain", files={"file": ("big.png", big.getvalue())})
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(response.content)).size == (1024, 768)
    raw = client.post("/explain?raw=true", files={"file": ("big.png", big.getvalue())})
    side = state(client).holder.current.model.input_shape[1]
    assert np.asarray(raw.json()["heatmap"]).shape == (side, side)


def with_alpha(data: bytes, alpha: int | None) -> bytes:
    """The film as an RGB PNG, or RGBA with `alpha` everywhere in its alpha band."""
    film = Image.open(io.BytesIO(data)).convert("RGB")
    if alpha is not None:
        film.putalpha(alpha)
    out = io.BytesIO()
    film.save(out, "PNG")
    return out.getvalue()


def bad_uploads() -> dict[str, tuple[bytes, int, str]]:
    good = IMAGES[0].read_bytes()
    bomb, sixteen = io.BytesIO(), io.BytesIO()
    Image.new("L", (9000, 9000)).save(bomb, "PNG")  # ~80 Mpx in a small file
    Image.fromarray(np.full((50, 60), 40000, dtype=np.uint16)).save(sixteen, "PNG")
    return {
        "text": (b"not an x-ray at all", 415, "not a JPEG, PNG or DICOM image"),
        "empty": (b"", 422, "empty file (0 bytes)"),
        "truncated": (good[: len(good) // 3], 422, "truncated or corrupt image data"),
        "bomb": (bomb.getvalue(), 422, "decompression bomb"),
        "sixteen-bit": (sixteen.getvalue(), 422, "unsupported mode 'I;16'"),
        "translucent": (with_alpha(good, 128), 422, "translucent RGBA image: 100.0% of pixels"),
        "dicom": (b"\0" * 128 + b"DICM" + b"\0" * 64, 422, "DICOM: a DICOM file without pixel"),
        "bad-crc": (bad_crc_png(), 422, "not decodable by the model's decoder: Invalid PNG"),
        "too-large": (good + b"\0" * 3_000_000, 413, "over the 3000000-byte limit"),
    }


@pytest.mark.parametrize("kind", sorted(bad_uploads()))
@pytest.mark.parametrize("route", ["/predict", "/explain"])
def test_bad_input_gets_a_4xx_naming_the_problem(client, kind: str, route: str) -> None:
    data, status, says = bad_uploads()[kind]
    response = client.post(route, files={"file": (f"{kind}.jpeg", data, "image/jpeg")})
    assert response.status_code == status
    assert says in response.json()["error"] and response.json()["image"] == f"{kind}.jpeg"
    assert client.get("/health").status_code == 200


def test_a_film_exported_with_an_opaque_alpha_band_is_scored_as_the_film(client) -> None:
    scored = {}
    for alpha in (None, 255):
        film = with_alpha(IMAGES[0].read_bytes(), alpha)
        response = client.post("/predict", files={"file": ("film.png", film)})
        assert response.status_code == 200, response.text
        scored[alpha] = response.json()["predictions"][0]["probability"]
    assert scored[255] == pytest.approx(scored[None], abs=1e-6)


@pytest.mark.parametrize("name", ["blob", "film.jfif", "film.dcm"])
def test_an_image_is_told_by_its_content_not_its_name(client, name: str) -> None:
    response = client.post("/predict", files={"file": (name, IMAGES[0].read_bytes())})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1


def test_missing_file_field_is_a_4xx(client) -> None:
    assert client.post("/predict").status_code == 422


def test_fifty_concurrent_requests_all_succeed(client) -> None:
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(
            pool.map(lambda i: client.post("/predict", files=upload(IMAGES[i % 3])), range(50))
        )
    assert [r.status_code for r in responses] == [200] * 50


def wait_for_logged(client, prefix: str, column: str, value: str, count: int) -> pd.DataFrame:
    """This test's own rows of a log, once the writer has written `count` of them. It waits on
    the rows, not the writer's counter: that also counts what an earlier test queued (fifty
    concurrent requests), so it can pass before this test's rows are written."""
    from pipeline.adapters.backends import open_store
    from pipeline.predict.inference_log import read_inference_log
    from pipeline.settings import Settings

    writer = state(client).writer
    store = open_store(Settings(home=state(client).settings.home))

    def logged() -> pd.DataFrame:
        log = read_inference_log(store, prefix=prefix)
        return log[log[column] == value] if column in log.columns else log

    return wait_until(
        lambda: (logged(), writer.last_error, writer.pending.qsize()),
        lambda seen: len(seen[0]) >= count,
        timeout=30,
        what=f"the log writer to write {count} rows of {value} to {prefix}",
        describe=lambda seen: f"found {len(seen[0])}, last error {seen[1]}, queued {seen[2]}",
    )[0]


def test_every_prediction_reaches_the_inference_log(client) -> None:
    from pipeline.predict.drift_features import FEATURE_COLUMNS
    from pipeline.predict.inference_log import LOG_PREFIX

    # Re-encoded, so its sha256 is this test's alone whatever else the log holds.
    unique = io.BytesIO()
    Image.open(IMAGES[1]).convert("L").save(unique, "JPEG", quality=77)
    sent = [
        client.post("/predict", files={"file": ("unique.jpeg", unique.getvalue())}) for _ in "ab"
    ]
    assert [r.status_code for r in sent] == [200, 200]
    digest = hashlib.sha256(unique.getvalue()).hexdigest()
    mine = wait_for_logged(client, LOG_PREFIX, "sha256", digest, 2)
    assert len(mine) == 2 and set(FEATURE_COLUMNS) <= set(mine.columns)
    assert set(mine["model_version"]) == {sent[0].json()["predictions"][0]["version"]}


def test_a_refused_upload_reaches_the_rejected_log_with_its_bit_depth(client) -> None:
    from pipeline.predict.inference_log import REJECTED_PREFIX

    sixteen = io.BytesIO()
    Image.fromarray(np.full((40, 50), 30000, dtype=np.uint16)).save(sixteen, "PNG")
    response = client.post("/predict", files={"file": ("detector-16.png", sixteen.getvalue())})
    assert response.status_code == 422
    mine = wait_for_logged(client, REJECTED_PREFIX, "image", "detector-16.png", 1)
    assert len(mine) == 1 and mine["bit_depth"].iloc[0] == 16
    assert set(mine["model_version"]) == {client.get("/health").json()["version"]}


def test_an_alias_move_is_picked_up_without_restart(client, registry) -> None:
    name = "pneumonia-resnet"
    before = champion_of(registry, name)
    current = registry.client.get_model_version(name, before)
    # A second registered version of the same model: an alias move, not a training, is tested.
    copy = registry.client.create_model_version(
        name, current.source, current.run_id, tags=current.tags
    )
    moved = str(copy.version)
    try:
        registry.move_champion(name, moved, "test: alias move")
        wait_until(
            lambda: client.get("/health").json(),
            lambda health: health.get("version") == moved,
            timeout=30,
            what=f"the service to load version {moved}",
        )
        prediction = client.post("/predict", files=upload(IMAGES[0])).json()["predictions"][0]
        assert prediction["version"] == moved
    finally:
        registry.move_champion(name, before, "test: alias move undone", rollback=True)
        # The next test must meet the champion it finds in the registry, not a reload midway.
        wait_until(
            lambda: client.get("/health").json(),
            lambda health: health.get("version") == before,
            timeout=30,
            what=f"the service to load version {before} again",
        )


def test_no_model_means_503(trained) -> None:
    from fastapi.testclient import TestClient

    from flows.service import create_app
    from pipeline.serve.background import ChampionHolder
    from pipeline.settings import Settings

    empty = ChampionHolder(load=lambda: None, resolve_revision=lambda: None)
    with TestClient(create_app(Settings(home=trained.home), holder=empty)) as test_client:
        assert test_client.get("/health").status_code == 503
        response = test_client.post("/predict", files=upload(IMAGES[0]))
        assert response.status_code == 503 and "no model loaded" in response.json()["error"]


def out_of_scope(scraped: str, version: str) -> dict[str, float]:
    """pneumo_out_of_scope_total by answer, for `version`, from a /metrics scrape."""
    found = re.findall(
        rf'pneumo_out_of_scope_total{{answer="(\w+)",model_version="{version}"}} (\S+)', scraped
    )
    return {answer: float(value) for answer, value in found}


def test_every_answer_says_whether_the_film_is_within_the_intended_use(client, monkeypatch) -> None:
    from pipeline.predict.inference_log import REJECTED_PREFIX
    from pipeline.settings import ScopeConfig

    service = state(client)
    before = out_of_scope(client.get("/metrics").text, service.holder.current.version)
    scope = service.holder.current.scope  # fitted on the val films at registration
    assert scope is not None and np.isfinite(scope.cutoff) and scope.false_flag_rate == 0.01
    # The card states the rate the check measured on the test films at registration.
    card = service.holder.current.card["md"]
    assert re.search(r"of the \d+ carved test films .* flagged \d+\.\d%", card)
    film = client.post("/predict", files=upload(IMAGES[0])).json()["predictions"][0]
    assert isinstance(film["in_scope"], bool) and isinstance(film["scope_reasons"], list)
    flat = io.BytesIO()
    Image.new("L", (200, 160), 128).save(flat, "PNG")
    warned = client.post("/predict", files={"file": ("flat.png", flat.getvalue())})
    assert warned.status_code == 200, warned.text
    body = warned.json()["predictions"][0]
    assert body["in_scope"] is False and body["label"] in ("NORMAL", "PNEUMONIA")
    assert body["scope_reasons"][0] == (
        "outside intended use: a flat image with nothing on it (spread 0.0 < 10)"
    )
    refusing = service.settings.model_copy(update={"scope": ScopeConfig(mode="refuse")})
    monkeypatch.setattr(service, "settings", refusing)
    refused = client.post("/predict", files={"file": ("flat.png", flat.getvalue())})
    assert refused.status_code == 422
    assert refused.json()["image"] == "flat.png"
    assert refused.json()["error"].startswith("outside intended use: a flat image")
    logged = wait_for_logged(client, REJECTED_PREFIX, "image", "flat.png", 1)
    assert logged["issue"].iloc[0] == refused.json()["error"]
    # /metrics counts both answers, so a rising share shows without reading the log.
    version = service.holder.current.version
    scraped = client.get("/metrics").text
    counts = {"flagged": 1 + (not film["in_scope"]), "refused": 1}
    assert out_of_scope(scraped, version) == {
        answer: before.get(answer, 0) + count for answer, count in counts.items()
    }
