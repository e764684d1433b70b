"""The prediction service with a real model trained on tiny data (FastAPI TestClient)."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FAST_TRAINING, OPEN_GATES, SAMPLE, tiny_subset

pytestmark = pytest.mark.slow

IMAGES = (
    sorted((SAMPLE / "test" / "PNEUMONIA").iterdir())[:2]
    + sorted((SAMPLE / "test" / "NORMAL").iterdir())[:1]
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two registered ResNet versions (champion: 2) in a fresh state directory."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.training import training_pipeline

    tmp = tmp_path_factory.mktemp("service")
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            **FAST_TRAINING,
            **OPEN_GATES,
            "PNEUMO_HOME": str(tmp / "home"),
            "PNEUMO_TRAIN__RESNET_HEAD_EPOCHS": "1",
            "PNEUMO_SERVE_POLL_SECONDS": "0.5",
            "PNEUMO_SERVE_MAX_UPLOAD_BYTES": "3000000",
        }.items():
            env.setenv(key, value)
        data = tiny_subset(tmp / "chest_xray")
        with prefect_test_harness(server_startup_timeout=120):
            for _ in range(2):
                training_pipeline(data_path=str(data), models=("resnet",))
        yield tmp / "home"


@pytest.fixture(scope="module")
def client(trained):
    from fastapi.testclient import TestClient

    from flows.service import create_app
    from pipeline import registry
    from pipeline.settings import Settings

    settings = Settings()
    registry.configure(settings.tracking_uri(), settings.experiment, settings.artifacts_dir)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def upload(path: Path, field: str = "file") -> dict:
    return {field: (path.name, path.read_bytes(), "image/jpeg")}


def test_health_and_model_describe_the_champion(client) -> None:
    assert client.get("/health").json() == {
        "status": "ready",
        "model": "pneumonia-resnet",
        "version": "2",
    }
    model = client.get("/model").json()
    assert model["version"] == "2" and model["alias"] == "champion"
    assert model["weights_source"].startswith("none") and len(model["manifest_id"]) == 16
    assert 0 <= model["metrics"]["roc_auc"] <= 1 and model["threshold"] == pytest.approx(
        float(model["threshold"])
    )
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_predictions_match_batch_inference(client) -> None:
    from pipeline.monitoring import predict_batch

    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in IMAGES]
    served = client.post("/predict", files=files).json()["predictions"]
    champion = client.app.state.holder.current
    batch, _ = predict_batch(champion, [(p.name, p.read_bytes()) for p in IMAGES], 40_000_000)
    assert [s["image"] for s in served] == list(batch["image"])
    np.testing.assert_allclose([s["probability"] for s in served], batch["probability"], atol=1e-5)
    assert [s["label"] for s in served] == list(batch["label"])
    assert all(
        s["version"] == "2" and s["alias"] == "champion" and s["latency_ms"] > 0 for s in served
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
    width, height = Image.open(IMAGES[0]).size
    heatmap = np.asarray(raw["heatmap"])
    assert heatmap.shape == (height, width) and heatmap.min() >= 0 and heatmap.max() <= 1


def bad_uploads() -> dict[str, tuple[bytes, int, str]]:
    good = IMAGES[0].read_bytes()
    bomb, sixteen = io.BytesIO(), io.BytesIO()
    Image.new("L", (9000, 9000)).save(bomb, "PNG")  # ~80 Mpx in a small file
    Image.fromarray(np.full((50, 60), 40000, dtype=np.uint16)).save(sixteen, "PNG")
    return {
        "text": (b"not an x-ray at all", 415, "not a JPEG or PNG image"),
        "empty": (b"", 422, "empty file (0 bytes)"),
        "truncated": (good[: len(good) // 3], 422, "truncated or corrupt image data"),
        "bomb": (bomb.getvalue(), 422, "decompression bomb"),
        "sixteen-bit": (sixteen.getvalue(), 422, "unsupported mode 'I;16'"),
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


def test_missing_file_field_is_a_4xx(client) -> None:
    assert client.post("/predict").status_code == 422


def test_fifty_concurrent_requests_all_succeed(client) -> None:
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(
            pool.map(lambda i: client.post("/predict", files=upload(IMAGES[i % 3])), range(50))
        )
    assert [r.status_code for r in responses] == [200] * 50


def test_every_prediction_reaches_the_inference_log(client) -> None:
    from pipeline.features import FEATURE_COLUMNS
    from pipeline.monitoring import read_inference_log
    from pipeline.settings import Settings
    from pipeline.storage import open_store

    client.post("/predict", files=upload(IMAGES[1]))
    deadline = time.time() + 20
    while client.app.state.writer.pending.qsize() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)
    log = read_inference_log(open_store(Settings()))
    assert len(log) >= 1 + len(IMAGES) + 50
    assert set(FEATURE_COLUMNS) <= set(log.columns) and set(log["model_version"]) >= {"2"}


def test_an_alias_move_is_picked_up_without_restart(client) -> None:
    from pipeline import registry

    registry.move_champion("pneumonia-resnet", "1", "test: roll back")
    deadline = time.time() + 30
    while client.get("/health").json()["version"] != "1" and time.time() < deadline:
        time.sleep(0.25)
    assert client.get("/health").json()["version"] == "1"
    assert (
        client.post("/predict", files=upload(IMAGES[0])).json()["predictions"][0]["version"] == "1"
    )


def test_no_model_means_503(trained) -> None:
    from fastapi.testclient import TestClient

    from flows.service import create_app
    from pipeline.serving import ChampionHolder
    from pipeline.settings import Settings

    empty = ChampionHolder(load=lambda: None, resolve_version=lambda: None)
    with TestClient(create_app(Settings(), holder=empty)) as test_client:
        assert test_client.get("/health").status_code == 503
        response = test_client.post("/predict", files=upload(IMAGES[0]))
        assert response.status_code == 503 and "no model loaded" in response.json()["detail"]
