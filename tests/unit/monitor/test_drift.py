"""The Evidently drift check and the documented drift rule."""

import warnings

import numpy as np
import pandas as pd
import pytest

from pipeline.monitor.drift import (
    REPORT_COLUMNS,
    apply_drift_rule,
    check_drift,
    evidently_report,
)
from pipeline.monitor.signals import IMAGE_SHIFT_COLUMNS, check_scope
from pipeline.predict.drift_features import EMBEDDING_COLUMNS, FEATURE_COLUMNS
from pipeline.predict.inference_log import DRIFT, INSUFFICIENT, NO_DRIFT, PREVALENCE
from pipeline.settings import DriftConfig


@pytest.mark.parametrize(
    ("drifted", "rule", "expected"),
    [
        (["mean", "std", "probability", "width", "height"], "share", False),
        (["mean", "std", "p05", "p50", "p95", "contrast"], "share", True),
        (["embedding_2"], "embedding", True),
        (["mean", "std", "p05", "p50", "p95", "contrast"], "embedding", False),
    ],
)
def test_image_shift_rule_counts_image_columns_only(
    drifted: list[str], rule: str, expected: bool
) -> None:
    assert apply_drift_rule(drifted, DriftConfig(rule=rule, drift_share=0.3)) == expected


def test_too_few_current_rows_is_insufficient_data() -> None:
    frame = pd.DataFrame(np.zeros((5, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    result = check_drift(frame, frame, DriftConfig(min_current=30), threshold=0.5)
    assert result.status == INSUFFICIENT and result.html is None


def test_a_window_of_refused_films_is_insufficient_data_with_a_quality_alert() -> None:
    reference = pd.DataFrame(np.ones((40, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    sixteen_bit = pd.DataFrame({"bit_depth": [16.0] * 40})
    result = check_drift(reference, reference.iloc[:0], DriftConfig(), 0.5, rejected=sixteen_bit)
    assert result.status == INSUFFICIENT
    assert result.quality.alert and result.quality.flagged == {"refused: 16-bit, not 8-bit": 40}
    assert result.summary("share")["quality"]["alert"]


@pytest.mark.slow  # the first Evidently report of a session costs ~10 s
def test_evidently_finds_a_strong_shift_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        rng.normal(size=(300, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS)
    )
    same = pd.DataFrame(rng.normal(size=(100, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    shifted = same + 3.0
    assert check_drift(reference, same, DriftConfig(), threshold=0.0).status == NO_DRIFT
    result = check_drift(reference, shifted, DriftConfig(), threshold=0.0)
    assert result.status == DRIFT and set(result.drifted_columns) == set(IMAGE_SHIFT_COLUMNS)
    assert "<html" in result.html.lower() and 'id="pneumo-signals"' in result.html


def report_drifted(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """The columns whose drift test failed in Evidently's own report."""
    snapshot = evidently_report(reference, current, DriftConfig()).dict()
    failed = {
        test["metric_config"]["params"].get("column")
        for test in snapshot["tests"]
        if str(test.get("status")).endswith("FAIL")
    }
    return sorted(failed & set(REPORT_COLUMNS))


@pytest.mark.slow
@pytest.mark.parametrize("reference_rows", [400, 1500])  # KS, then Wasserstein beyond 1,000
def test_the_decision_flags_the_columns_evidently_s_report_shows(reference_rows: int) -> None:
    rng = np.random.default_rng(reference_rows)
    columns = list(FEATURE_COLUMNS)
    reference = pd.DataFrame(rng.normal(size=(reference_rows, len(columns))), columns=columns)
    current = pd.DataFrame(rng.normal(size=(100, len(columns))), columns=columns)
    # Mild shifts, so some columns sit near the threshold and a different test would show.
    current[list(REPORT_COLUMNS)] += np.linspace(0.0, 0.6, len(REPORT_COLUMNS))
    # Every row predicted positive: the decision compares against the whole reference too.
    result = check_drift(reference, current, DriftConfig(), threshold=-np.inf, html=False)
    assert result.matched_reference_rows == reference_rows
    expected = [c for c in report_drifted(reference, current) if c in IMAGE_SHIFT_COLUMNS]
    assert 0 < len(result.drifted_columns) < len(IMAGE_SHIFT_COLUMNS)
    assert sorted(result.drifted_columns) == expected


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
        result = check_drift(reference, current, DriftConfig(), threshold=0.0, html=False)
    assert result.status == NO_DRIFT
    assert not {"width", "height", "aspect_ratio"} & set(result.drifted_columns)


def xrays(rng: np.random.Generator, rows: int, normal_share: float) -> pd.DataFrame:
    """Feature rows whose image columns and probability depend on the class, as real films do
    (NORMAL films larger and brighter here); i.i.d. given the class."""
    normal = rng.random(rows) < normal_share
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURE_COLUMNS))), columns=FEATURE_COLUMNS)
    for column in ("mean", "p50", "contrast", "embedding_0", "embedding_1"):
        frame[column] += np.where(normal, 1.5, 0.0)
    frame["width"] = np.where(normal, 1800.0, 1200.0) + rng.normal(0, 50, rows)
    frame["height"] = frame["width"] * 0.8
    frame["std"] = 40 + frame["std"]
    frame["probability"] = np.clip(np.where(normal, 0.15, 0.85) + rng.normal(0, 0.1, rows), 0, 1)
    return frame


def test_a_new_class_mix_alone_is_a_prevalence_alert_not_image_drift() -> None:
    rng = np.random.default_rng(3)
    reference = xrays(rng, 600, normal_share=0.33)
    # Fewer children with pneumonia (60 % NORMAL instead of 33 %): against the unmatched
    # reference five class-dependent columns drift and the old rule retrained.
    quieter_season = xrays(rng, 150, normal_share=0.6)
    result = check_drift(reference, quieter_season, DriftConfig(), threshold=0.5, html=False)
    assert result.status == PREVALENCE and not result.image_shift
    assert result.prevalence.shifted and result.prevalence.current_rate < 0.5
    assert result.matched_reference_rows < len(reference)
    summary = result.summary("share")
    assert summary["prevalence"]["shifted"] and summary["image_shift"] is False


def test_washed_out_films_at_the_same_mix_are_image_drift() -> None:
    rng = np.random.default_rng(4)
    reference = xrays(rng, 600, normal_share=0.33)
    washed_out = xrays(rng, 150, normal_share=0.33)
    for column in ("std", "p05", "p50", "p95", "contrast", "mean", "embedding_2", "embedding_3"):
        washed_out[column] = washed_out[column] * 0.3 + 2
    result = check_drift(reference, washed_out, DriftConfig(), threshold=0.5, html=False)
    assert result.status == DRIFT and not result.prevalence.shifted
    assert {"contrast", "p05", "p95"} <= set(result.drifted_columns)


def test_a_rising_share_of_films_outside_the_intended_use_is_its_own_alert() -> None:
    reference = pd.DataFrame(np.zeros((40, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    quiet = reference.iloc[:5].assign(in_scope=[True, True, True, True, False])
    # A few flagged films are what the cut-off lets through: no alert on 1 of 100 at 2 %.
    window = pd.concat([quiet.assign(in_scope=True)] * 19 + [quiet])
    assert not check_scope(window, None, 0.02, 0.01).alert
    # Rows logged before the check existed (no `in_scope`) say nothing either way.
    older = pd.concat([window, reference.assign(in_scope=np.nan)])
    assert check_scope(older, None, 0.02, 0.01).rows == 100
    # Refusals under PNEUMO_SCOPE__MODE=refuse count as outside; other refusals do not.
    rejected = pd.DataFrame(
        {
            "issue": ["outside intended use: ViewPosition LL (expected PA or AP: a frontal film)"]
            * 6
            + ["unlike the training films (distance 14.0 > 9.2)", "empty file (0 bytes)"],
            "bit_depth": [np.nan] * 8,
        }
    )
    result = check_drift(
        reference, window, DriftConfig(min_current=200), 0.5, rejected=rejected, scope_rate=0.02
    )
    assert result.status == INSUFFICIENT  # no image-shift test on 100 rows here, still judged
    scope = result.summary("share")["scope"]
    assert (scope["rows"], scope["outside"], scope["alert"]) == (107, 8, True)
    refusals = {k: n for k, n in result.quality.flagged.items() if k.startswith("refused")}
    assert refusals == {
        "refused: outside the intended use": 7,
        "refused: unreadable, empty, too large, or an unsupported type or mode": 1,
    }
    assert check_drift(reference, window, DriftConfig(min_current=200), 0.5).scope is None


def embedding_frame(rows: int, seed: int, positive_share: float = 0.5) -> pd.DataFrame:
    """Rows whose embedding components depend on the predicted class, as real films' do."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURE_COLUMNS))), columns=FEATURE_COLUMNS)
    positive = rng.random(rows) < positive_share
    frame["probability"] = np.where(positive, 0.9, 0.1)
    frame[list(EMBEDDING_COLUMNS)] += np.where(positive, 2.0, -2.0)[:, None]
    return frame


def test_the_embedding_components_are_tested_together_against_the_class_matched_films() -> None:
    reference = embedding_frame(600, seed=0)
    cfg = DriftConfig()
    # A batch of mostly one class is not a shift of the films: the reference is matched first.
    mostly_positive = embedding_frame(100, seed=1, positive_share=0.9)
    result = check_drift(reference, mostly_positive, cfg, threshold=0.5, html=False)
    assert not result.representation.shifted, result.representation
    # Each component moved by 0.4 sd: together they are plainly another population.
    moved = mostly_positive.copy()
    moved[list(EMBEDDING_COLUMNS)] += 0.4
    result = check_drift(reference, moved, cfg, threshold=0.5, html=False)
    assert result.representation.shifted and result.representation.p_value < 0.01
    assert result.status == DRIFT and result.summary("share")["representation"]["shifted"]
    # alpha 0 turns the test off; the per-column rule still decides.
    off = check_drift(reference, moved, DriftConfig(representation_alpha=0), 0.5, html=False)
    assert not off.representation.shifted
    assert off.image_shift == apply_drift_rule(off.drifted_columns, cfg)
