"""Batch inference with the champion: bad images skipped with reasons."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.adapters.storage import LocalStore
from pipeline.data.dicom import image_pixels
from pipeline.predict.champion import Champion
from pipeline.predict.drift_features import (
    FEATURE_COLUMNS,
    fit_projection,
    image_features,
)
from pipeline.predict.scoring import predict_batch, read_images
from pipeline.settings import ScopeConfig, TrainConfig
from pipeline.train.models import build_cnn
from tests.conftest import SAMPLE, bad_crc_png, image_bytes, write
from tests.dicom import gray_film, make_dicom


@pytest.fixture(scope="module")
def champion() -> Champion:
    model = build_cnn(TrainConfig(image_size=32), prior=0.8)
    width = model.get_layer("pool").output.shape[-1]  # the embedding the probe returns
    projection = fit_projection(np.random.default_rng(0).normal(size=(10, width)))
    return Champion("pneumonia-resnet", "3", "run", 0.5, model, projection, pd.DataFrame())


def test_batch_prediction_skips_bad_images_with_reasons(champion: Champion) -> None:
    items = [
        ("good.jpeg", image_bytes((64, 48))),
        ("empty.jpeg", b""),
        ("notes.txt", b"hi"),
        ("detector.png", image_bytes((64, 48), mode="I;16", fmt="PNG")),
    ]
    predictions, rejected = predict_batch(champion, items, max_pixels=10_000_000)
    assert list(predictions["image"]) == ["good.jpeg"]
    assert predictions.loc[0, "probability"] == pytest.approx(0.8, abs=1e-4)
    assert predictions.loc[0, "label"] == "PNEUMONIA" and predictions.loc[0, "model_version"] == "3"
    assert set(FEATURE_COLUMNS) <= set(predictions.columns)
    # No distance fitted for this version: only the image checks judge the intended use.
    assert predictions.loc[0, "in_scope"] and predictions.loc[0, "scope_reasons"] == ""
    assert np.isnan(predictions.loc[0, "ood_distance"])
    issues = dict(zip(rejected["image"], rejected["issue"], strict=True))
    assert issues.pop("detector.png").startswith("unsupported mode 'I;16' (16-bit")
    assert issues == {
        "empty.jpeg": "empty file (0 bytes)",
        "notes.txt": "not a JPEG, PNG or DICOM image",
    }
    # Logged like predictions, so the drift check counts what the model never saw.
    depth = dict(zip(rejected["image"], rejected["bit_depth"], strict=True))
    assert depth["detector.png"] == 16 and np.isnan(depth["notes.txt"])
    assert set(rejected["model_version"]) == {"3"} and rejected["timestamp"].notna().all()


def test_progress_is_reported_per_image_for_scoring_and_drift_features(
    champion: Champion,
) -> None:
    seen: dict[str, tuple[int, int]] = {}

    def record(items, total, what):
        count = 0
        for item in items:
            count += 1
            yield item
        seen[what] = (count, total)

    items = [(f"{i}.png", image_bytes((40, 40), fmt="PNG", seed=i)) for i in range(5)]
    predictions, _ = predict_batch(champion, items, 10_000_000, progress=record)
    assert len(predictions) == 5
    assert seen == {"score": (5, 5), "drift features": (5, 5)}


def test_a_folder_s_links_are_refused_and_images_named_anything_are_scored(
    champion: Champion, tmp_path: Path
) -> None:
    secret = write(tmp_path / "outside" / "secret.jpeg", image_bytes(seed=9))
    folder = tmp_path / "batch"
    write(folder / "blob", image_bytes(seed=1))
    write(folder / "film.jfif", image_bytes(seed=2))
    (folder / "x.jpeg").symlink_to(secret)
    items, unread = read_images(str(folder), LocalStore(tmp_path / "store"))
    predictions, rejected = predict_batch(champion, items, 10_000_000, unread=unread)
    assert sorted(predictions["image"]) == ["blob", "film.jfif"]
    assert dict(zip(rejected["image"], rejected["issue"], strict=True)) == {
        "x.jpeg": "symbolic link, not followed"
    }


def test_an_image_the_model_cannot_decode_is_rejected_not_a_failed_batch(
    champion: Champion,
) -> None:
    items = [("a.png", image_bytes(fmt="PNG", seed=1)), ("crc.png", bad_crc_png()),
             ("b.jpeg", image_bytes(seed=2))]  # fmt: skip
    predictions, rejected = predict_batch(champion, items, max_pixels=10_000_000)
    assert list(predictions["image"]) == ["a.png", "b.jpeg"]
    # The drift features still belong to the rows they sit on.
    means = predictions.set_index("image")["mean"]
    assert means["b.jpeg"] == pytest.approx(image_features(items[2][1])["mean"])
    assert list(rejected["image"]) == ["crc.png"]
    assert (
        rejected["issue"]
        .iloc[0]
        .startswith("not decodable by the model's decoder: Invalid PNG data")
    )


def test_a_film_outside_the_intended_use_is_flagged_or_refused(champion: Champion) -> None:
    film = gray_film(sorted((SAMPLE / "train" / "NORMAL").glob("*.jpeg"))[0])
    lateral = make_dicom(film, bits_stored=8, tags={"ViewPosition": "LL"})
    items = [("lateral.dcm", lateral), ("frontal.dcm", make_dicom(film, bits_stored=8))]
    reason = "outside intended use: ViewPosition LL (expected PA or AP: a frontal film)"
    flagged, _ = predict_batch(champion, items, 10_000_000)
    assert list(flagged["in_scope"]) == [False, True]
    assert list(flagged["scope_reasons"]) == [reason, ""]
    # Tags read before the film was rendered (the service's upload check) count the same.
    rendered = [("upload", image_pixels(lateral, 10_000_000))]
    told, _ = predict_batch(champion, rendered, 10_000_000, tags=[{"ViewPosition": "LL"}])
    assert list(told["scope_reasons"]) == [reason]
    # refuse: no label for it, a rejected-log row with the reasons instead.
    refuse = ScopeConfig(mode="refuse")
    scored, rejected = predict_batch(champion, items, 10_000_000, scope_cfg=refuse)
    assert list(scored["image"]) == ["frontal.dcm"]
    assert dict(zip(rejected["image"], rejected["issue"], strict=True)) == {"lateral.dcm": reason}
