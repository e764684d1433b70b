"""Prevalence, class-mix matching and data quality: the signals beside Evidently's tests."""

import numpy as np
import pandas as pd

from pipeline.monitor.signals import check_prevalence, check_quality, match_class_mix


def scored(probabilities: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"probability": probabilities})


def test_same_rate_is_no_prevalence_shift_and_a_surge_is() -> None:
    reference = scored([0.9] * 400 + [0.1] * 200)  # 2/3 predicted PNEUMONIA
    same = scored([0.9] * 66 + [0.1] * 34)
    surge = scored([0.9] * 95 + [0.1] * 5)
    quiet = check_prevalence(reference, same, threshold=0.5, alpha=0.01)
    assert not quiet.shifted and quiet.band[0] < 2 / 3 < quiet.band[1]
    loud = check_prevalence(reference, surge, threshold=0.5, alpha=0.01)
    assert loud.shifted and loud.current_rate == 0.95 and loud.p_value < 0.01


def test_the_reference_is_resampled_to_the_batch_mix_without_repeats() -> None:
    reference = scored(list(np.linspace(0.51, 1, 400)) + list(np.linspace(0, 0.49, 200)))
    batch = scored([0.9] * 50 + [0.1] * 50)
    matched = match_class_mix(reference, batch, threshold=0.5)
    positive = matched["probability"] >= 0.5
    assert positive.sum() == 200 and (~positive).sum() == 200
    assert not matched["probability"].duplicated().any()
    assert match_class_mix(reference, batch, threshold=0.5).equals(matched)  # seeded
    all_positive = scored([0.9] * 10)
    assert match_class_mix(reference, all_positive, threshold=0.5) is reference


def test_small_oversized_blank_and_inverted_films_are_flagged() -> None:
    batch = pd.DataFrame(
        {
            "width": [1024, 40, 9000, 1024, 1024] + [1024] * 15,
            "height": [1024] * 20,
            "std": [50, 50, 50, 0.5, 50] + [50] * 15,
            "polarity": [60, 60, 60, 60, -70] + [60] * 15,
        }
    )
    check = check_quality(batch, min_side=64, max_side=8192, blank_std=2, max_share=0.05)
    assert check.flagged == {
        "smaller than 64 px": 1,
        "larger than 8192 px": 1,
        "blank (pixel std < 2)": 1,
        "inverted (border brighter than the centre)": 1,
    }
    assert check.alert  # 4 of 20 is above 5 %
    fine = check_quality(batch.iloc[[0, 5, 6]], 64, 8192, 2, 0.05)
    assert fine.flagged == {} and not fine.alert


def test_rows_logged_before_polarity_existed_are_not_called_inverted() -> None:
    batch = pd.DataFrame({"width": [1024] * 5, "height": [1024] * 5, "std": [50] * 5})
    assert check_quality(batch, 64, 8192, 2, 0.05).flagged == {}


def test_refused_films_count_by_bit_depth_and_towards_the_alert() -> None:
    scored = pd.DataFrame({"width": [1024] * 18, "height": [1024] * 18, "std": [50] * 18})
    refused = pd.DataFrame({"bit_depth": [16.0, float("nan")]})
    check = check_quality(scored, 64, 8192, 2, 0.05, rejected=refused)
    assert check.flagged == {
        "refused: 16-bit, not 8-bit": 1,
        "refused: unreadable, empty, too large, or an unsupported type or mode": 1,
    }
    assert check.rows == 20 and check.alert  # 2 of 20
    alone = check_quality(scored.iloc[:0], 64, 8192, 2, 0.05, rejected=refused)
    assert alone.alert and alone.rows == 2
