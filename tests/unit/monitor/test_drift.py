"""The Evidently drift check and the documented drift rule."""

import warnings

import numpy as np
import pandas as pd
import pytest

from pipeline.monitor.drift import DRIFT, INSUFFICIENT, NO_DRIFT, apply_drift_rule, check_drift
from pipeline.monitor.drift_features import (
    FEATURE_COLUMNS,
)
from pipeline.settings import DriftConfig


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
    assert apply_drift_rule(drifted, DriftConfig(rule=rule, drift_share=0.3)) == expected


def test_too_few_current_rows_is_insufficient_data() -> None:
    frame = pd.DataFrame(np.zeros((5, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    result = check_drift(frame, frame, DriftConfig(min_current=30))
    assert result.status == INSUFFICIENT and result.html is None


@pytest.mark.slow  # the first Evidently report of a session costs ~10 s
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


@pytest.mark.slow
def test_columns_constant_in_both_batches_are_quiet_and_not_drift() -> None:
    # Every image the same size: width, height and aspect ratio never vary.
    rng = np.random.default_rng(1)
    columns = list(FEATURE_COLUMNS)
    reference = pd.DataFrame(rng.normal(size=(200, len(columns))), columns=columns)
    current = pd.DataFrame(rng.normal(size=(60, len(columns))), columns=columns)
    for frame in (reference, current):
        frame[["width", "height", "aspect_ratio"]] = (224.0, 224.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = check_drift(reference, current, DriftConfig())
    assert result.status == NO_DRIFT
    assert not {"width", "height", "aspect_ratio"} & set(result.drifted_columns)
