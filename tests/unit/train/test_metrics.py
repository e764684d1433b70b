import numpy as np
import pandas as pd
import pytest

from pipeline.settings import ThresholdConfig
from pipeline.train.metrics import choose_threshold, compute_metrics


def test_threshold_reaches_target_sensitivity_at_the_highest_possible_cut() -> None:
    labels = np.array([0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.3, 0.7, 0.8, 0.9])
    threshold, rule = choose_threshold(labels, scores, ThresholdConfig(target_sensitivity=0.75))
    assert threshold == pytest.approx(0.7)
    assert "target sensitivity 0.75" in rule


def test_threshold_considers_points_a_straight_stretch_of_the_roc_curve_would_hide() -> None:
    # Every positive outscores every negative: the ROC curve rises straight up the axis, and
    # roc_curve's default keeps only its ends, i.e. sensitivity 1.0 where 0.8 was asked.
    labels = np.array([1, 1, 1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1, 0.05])
    threshold, _ = choose_threshold(labels, scores, ThresholdConfig(target_sensitivity=0.75))
    assert threshold == 0.6
    assert compute_metrics(labels, scores, threshold)["sensitivity"] == 0.8


def test_youden_threshold_maximises_tpr_minus_fpr() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.7, 0.6, 0.8, 0.85, 0.9])
    threshold, _ = choose_threshold(labels, scores, ThresholdConfig(rule="youden"))
    assert threshold == pytest.approx(0.8)  # J = 3/4 - 0 beats 0.6's J = 1 - 1/3


def test_single_class_validation_falls_back_to_half() -> None:
    assert choose_threshold(np.ones(4), np.linspace(0, 1, 4), ThresholdConfig())[0] == 0.5


def test_metrics_match_hand_computed_values() -> None:
    labels = np.array([1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.2, 0.7, 0.1])
    subtypes = pd.Series(["bacteria", "virus", "virus", "normal", "normal"])
    m = compute_metrics(labels, scores, 0.5, subtypes)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 1)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(5 / 6)  # 5 of 6 positive/negative pairs ranked right
    assert m["recall_bacteria"] == 1.0 and m["recall_virus"] == 0.5
