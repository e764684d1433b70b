from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.drift import DRIFT, INSUFFICIENT, NO_DRIFT, check_drift, decide
from pipeline.features import FEATURE_COLUMNS, Projection, fit_projection, image_features
from pipeline.models import build_cnn
from pipeline.monitoring import Champion, append_inference_log, predict_batch, read_inference_log
from pipeline.settings import DriftConfig, TrainConfig
from pipeline.simulate import shift_image, simulate_batch
from pipeline.split import merge_labeled
from pipeline.storage import LocalStore
from tests.conftest import SAMPLE, image_bytes

XRAY = sorted((SAMPLE / "test" / "NORMAL").iterdir())[0].read_bytes()


def test_features_react_to_blur_and_contrast() -> None:
    base = image_features(XRAY)
    assert base["width"] > 500 and base["aspect_ratio"] == pytest.approx(
        base["width"] / base["height"]
    )
    assert image_features(shift_image(XRAY, "blur"))["sharpness"] < base["sharpness"] / 2
    assert image_features(shift_image(XRAY, "contrast"))["contrast"] < base["contrast"] / 2
    assert 0 < base["entropy"] <= 8


def test_projection_round_trips_through_json() -> None:
    embeddings = np.random.default_rng(0).normal(size=(40, 16))
    projection = fit_projection(embeddings)
    again = Projection.from_json(projection.to_json())
    np.testing.assert_allclose(again.transform(embeddings), projection.transform(embeddings))
    assert projection.transform(embeddings).shape == (40, 5)


@pytest.mark.parametrize(
    ("drifted", "rule", "expected"),
    [
        (["mean", "std"], "share", NO_DRIFT),
        (["mean", "std", "p05", "p50", "p95", "contrast"], "share", DRIFT),
        (["embedding_2"], "embedding", DRIFT),
        (["mean", "std", "p05", "p50", "p95", "contrast"], "embedding", NO_DRIFT),
    ],
)
def test_decision_rule(drifted: list[str], rule: str, expected: str) -> None:
    assert decide(drifted, DriftConfig(rule=rule, drift_share=0.3)) == expected


def test_too_few_current_rows_is_insufficient_data() -> None:
    frame = pd.DataFrame(np.zeros((5, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    result = check_drift(frame, frame, DriftConfig(min_current=30))
    assert result.status == INSUFFICIENT and result.html is None


def test_evidently_finds_a_strong_shift_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        rng.normal(size=(300, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS)
    )
    same = pd.DataFrame(rng.normal(size=(100, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    shifted = same + 3.0
    assert check_drift(reference, same, DriftConfig()).status == NO_DRIFT
    result = check_drift(reference, shifted, DriftConfig())
    assert result.status == DRIFT and set(result.drifted_columns) == set(FEATURE_COLUMNS)
    assert "<html" in result.html.lower()


def test_inference_log_is_append_only_and_windowed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    for day, version in ((0, "1"), (5, "1"), (6, "2")):
        when = now + timedelta(days=day)
        batch = pd.DataFrame(
            {
                "image": [f"a{day}", f"b{day}"],
                "model_version": version,
                "timestamp": pd.Timestamp(when),
            }
        )
        append_inference_log(store, batch, when)
    later = now + timedelta(days=6)
    assert len(store.list("inference-log/")) == 3
    assert len(read_inference_log(store, now=later)) == 6
    assert list(read_inference_log(store, model_version="1", now=later)["image"]) == [
        "a0",
        "b0",
        "a5",
        "b5",
    ]
    assert list(read_inference_log(store, days=2, now=later)["image"]) == ["a5", "b5", "a6", "b6"]
    assert list(read_inference_log(store, last_n=1, now=later)["image"]) == ["b6"]


def test_batch_prediction_skips_bad_images_with_reasons() -> None:
    model = build_cnn(TrainConfig(image_size=32), prior=0.8)
    projection = fit_projection(np.random.default_rng(0).normal(size=(10, 256)))
    champion = Champion("pneumonia-resnet", "3", "run", 0.5, model, projection, pd.DataFrame())
    items = [("good.jpeg", image_bytes((64, 48))), ("empty.jpeg", b""), ("notes.txt", b"hi")]
    predictions, rejected = predict_batch(champion, items, max_pixels=10_000_000)
    assert list(predictions["image"]) == ["good.jpeg"]
    assert predictions.loc[0, "probability"] == pytest.approx(0.8, abs=1e-4)
    assert predictions.loc[0, "label"] == "PNEUMONIA" and predictions.loc[0, "model_version"] == "3"
    assert set(FEATURE_COLUMNS) <= set(predictions.columns)
    assert dict(zip(rejected["image"], rejected["issue"], strict=True)) == {
        "empty.jpeg": "empty file (0 bytes)",
        "notes.txt": "unsupported file extension '.txt'",
    }


def test_new_labels_never_join_val_or_test_patients() -> None:
    manifest = pd.DataFrame(
        {
            "path": ["a", "b"],
            "patient_id": ["p1", "p2"],
            "split": ["train", "test"],
            "sha256": ["s1", "s2"],
        }
    )
    labeled = pd.DataFrame(
        {
            "path": ["n1", "n2", "n3"],
            "patient_id": ["p9", "p2", "p3"],
            "split": [None] * 3,
            "sha256": ["s9", "s8", "s1"],
        }
    )
    merged, left_out = merge_labeled(manifest, labeled)
    assert list(merged["path"]) == ["a", "b", "n1"] and merged["split"].iloc[-1] == "train"
    assert dict(zip(left_out["path"], left_out["reason"], strict=True)) == {
        "n2": "patient is in val/test",
        "n3": "already in the manifest",
    }


def test_simulated_batch_never_overwrites(tmp_path: Path) -> None:
    source = SAMPLE / "val"
    assert simulate_batch(source, tmp_path / "out", "noise") == 16
    with pytest.raises(FileExistsError, match="choose an empty --out folder"):
        simulate_batch(source, tmp_path / "out", "noise")


def test_labelled_images_join_the_latest_manifest_train_split(
    small_dataset: Path, store, settings, tmp_path: Path
) -> None:
    from pipeline.dataset import add_labeled, ingest_dataset
    from pipeline.manifest import load_manifest
    from tests.conftest import make_dataset

    ingest_dataset(small_dataset, store, settings)
    labeled = make_dataset(tmp_path / "labeled", {"train": {"IM-0500": 2, "IM-0100": 1}}, seed=900)
    summary = add_labeled(labeled, store, settings)
    version, manifest = load_manifest(store)
    assert version == summary.manifest_id and summary.added == 2
    assert set(manifest.loc[manifest["patient_id"] == "IM-0500", "split"]) == {"train"}
    assert list(summary.left_out["reason"]) == [
        "patient is in val/test"
    ]  # IM-0100 is a test patient
