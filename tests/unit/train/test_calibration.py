"""Calibration: the fitted maps, their Keras form (what is served), and ECE on real images."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from scipy.special import expit

from pipeline.data.ingest import parse_patient_id
from pipeline.settings import CalibrationConfig, TrainConfig
from pipeline.train.calibration import (
    Calibration,
    apply_calibration,
    brier_score,
    calibrate_model,
    choose_calibration,
    expected_calibration_error,
    fit_method,
    fit_platt,
    head_logits,
    score_features,
    strip_calibration,
)
from pipeline.train.gradcam import gradcam
from pipeline.train.inputs import input_spec, make_dataset, predict_files, predict_outputs
from pipeline.train.models import HEAD_LAYER, build_cnn, compile_model
from tests.conftest import SAMPLE

CFG = CalibrationConfig()


def overconfident(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels drawn from sigmoid(z), reported as logits 3z - 1: too sure and biased."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    labels = (rng.uniform(size=n) < expit(z)).astype(int)
    return labels, 3 * z - 1, [f"p{i}" for i in range(n)]


def test_ece_is_zero_when_rates_match_and_the_gap_otherwise() -> None:
    labels = np.array([0, 1, 0, 1])
    assert expected_calibration_error(labels, np.full(4, 0.5)) == 0.0
    # all in the 0.9 bin, observed rate 0.5: gap 0.4
    assert expected_calibration_error(labels, np.full(4, 0.9)) == pytest.approx(0.4)
    assert brier_score(labels, np.array([0, 1, 0, 1.0])) == 0.0


def test_platt_recovers_the_map_that_undoes_the_distortion() -> None:
    labels, logits, _ = overconfident(20_000)
    slope, intercept = fit_platt(labels, logits)
    # logits = 3z - 1, truth sigmoid(z): the inverse map is z = logits / 3 + 1 / 3
    assert slope == pytest.approx(1 / 3, abs=0.03)
    assert intercept == pytest.approx(1 / 3, abs=0.05)


def test_platt_stays_finite_on_a_perfectly_separated_split() -> None:
    slope, _ = fit_platt(np.array([0, 0, 1, 1]), np.array([-2.0, -1.0, 1.0, 2.0]))
    assert 0 < slope < 10


def test_calibration_lowers_ece_on_held_out_patients() -> None:
    labels, logits, groups = overconfident(4000, seed=1)
    fit_half, held = slice(0, 2000), slice(2000, None)
    calibration = choose_calibration(labels[fit_half], logits[fit_half], groups[fit_half], CFG)
    assert calibration.method == "platt"  # auto: isotonic does not beat it on a sigmoid shape
    before = expected_calibration_error(labels[held], expit(logits[held]))
    after = expected_calibration_error(labels[held], apply_calibration(calibration, logits[held]))
    assert before > 0.08 and after < before / 3
    assert set(calibration.cv_ece) == {"platt", "isotonic", "uncalibrated"}


def test_auto_keeps_platt_on_a_small_val_split_even_if_isotonic_scores_better() -> None:
    # A step-shaped truth that a sigmoid cannot follow: isotonic wins the cross-validation.
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, 3000)
    labels = (rng.uniform(size=3000) < np.where(logits > 0, 0.9, 0.1)).astype(int)
    groups = [f"p{i}" for i in range(3000)]
    large = choose_calibration(labels, logits, groups, CFG)
    assert large.method == "isotonic"
    small = choose_calibration(labels[:300], logits[:300], groups[:300], CFG)
    assert small.method == "platt" and "300 val films < 1000" in small.why


def test_nothing_is_fitted_on_one_class_or_when_switched_off() -> None:
    one_class = choose_calibration(
        np.ones(10, int), np.zeros(10), [f"p{i}" for i in range(10)], CFG
    )
    assert one_class.method == "none" and "one class" in one_class.why
    labels, logits, groups = overconfident(100)
    off = choose_calibration(labels, logits, groups, CalibrationConfig(method="none"))
    assert off.method == "none"


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_the_served_model_computes_the_fitted_map(method: str) -> None:
    keras.utils.set_random_seed(0)
    model = build_cnn(TrainConfig(image_size=32))
    head = model.get_layer(HEAD_LAYER)
    kernel, bias = head.get_weights()
    rng = np.random.default_rng(0)
    head.set_weights([rng.normal(0, 0.5, kernel.shape).astype("float32"), bias])
    features = rng.uniform(0, 3, (400, kernel.shape[0])).astype("float32")
    logits = head_logits(model, features)
    labels = (rng.uniform(size=400) < expit(logits / 2)).astype(int)
    calibration = fit_method(method, labels, logits)
    served = calibrate_model(model, calibration)
    expected = apply_calibration(calibration, logits)
    # float32 through steep isotonic ramps: close, not equal; evaluation scores with the model
    np.testing.assert_allclose(score_features(served, features), expected, atol=1e-4)
    # The uncalibrated model is left as it was, and the isotonic layers can be taken off again.
    np.testing.assert_allclose(score_features(model, features), expit(logits), atol=2e-5)
    stripped = strip_calibration(served)
    assert (method == "platt") == (stripped is served)
    if method == "isotonic":
        np.testing.assert_allclose(score_features(stripped, features), expit(logits), atol=2e-5)
        frozen = [layer for layer in served.layers if layer.name.startswith("calibration")]
        assert len(frozen) == 3 and not any(layer.trainable_weights for layer in frozen)


def test_platt_keeps_the_gradcam_map(tmp_path) -> None:
    keras.utils.set_random_seed(0)
    model = build_cnn(TrainConfig(image_size=32))
    head = model.get_layer(HEAD_LAYER)
    kernel, bias = head.get_weights()
    head.set_weights(
        [np.abs(np.random.default_rng(0).normal(size=kernel.shape)).astype("float32"), bias]
    )
    image = np.random.default_rng(1).uniform(0, 255, (32, 32, 1)).astype("float32")
    served = calibrate_model(model, Calibration("platt", "", slope=0.4, intercept=1.2))
    np.testing.assert_allclose(gradcam(served, image), gradcam(model, image), atol=1e-5)


def real_split(name: str, start: int, stop: int) -> tuple[list[str], np.ndarray, list[str]]:
    """Files start..stop of each class of a sample split (sorted), labels, patient ids."""
    paths, labels = [], []
    for value, label in enumerate(("NORMAL", "PNEUMONIA")):
        files = sorted((SAMPLE / name / label).glob("*.jpeg"))[start:stop]
        paths += [str(p) for p in files]
        labels += [value] * len(files)
    return paths, np.array(labels), [parse_patient_id(Path(p).name) for p in paths]


@pytest.mark.slow
def test_calibration_lowers_ece_of_a_real_image_model_on_held_out_films() -> None:
    """A small CNN trained on real films, made overconfident and biased (logit x 4, + 2) as
    class weighting and long training leave models; calibrated on train-folder films it was not
    trained on, measured on the sample's test films (other patients)."""
    keras.utils.set_random_seed(0)
    train_paths, train_labels, _ = real_split("train", 0, 60)
    model = build_cnn(TrainConfig(image_size=48))
    compile_model(model, 1e-3)
    dataset = make_dataset(train_paths, train_labels.astype("float32"), input_spec(model), 16)
    model.fit(dataset.shuffle(256, seed=0), epochs=4, verbose=0)
    head = model.get_layer(HEAD_LAYER)
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 4, bias * 4 + 2])
    fit_paths, fit_labels, fit_groups = real_split("train", 60, 240)
    features = predict_outputs(keras.Model(model.inputs, head.input), fit_paths)
    calibration = choose_calibration(fit_labels, head_logits(model, features), fit_groups, CFG)
    test_paths, test_labels, _ = real_split("test", 0, 90)
    before = expected_calibration_error(test_labels, predict_files(model, test_paths))
    served = calibrate_model(model, calibration)
    after = expected_calibration_error(test_labels, predict_files(served, test_paths))
    assert calibration.method != "none"
    assert after < before - 0.05, (before, after, calibration)
