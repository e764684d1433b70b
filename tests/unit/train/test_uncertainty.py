"""Patient-level bootstrap intervals: they hold the point estimate, narrow with more patients,
and treat a patient's films as one case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.train.uncertainty import (
    bootstrap_intervals,
    interval_columns,
    patient_groups,
    rank_auc,
    rate_metrics,
    subgroup_table,
)


@pytest.mark.parametrize("seed", range(5))
def test_rank_auc_is_sklearns_auc_ties_included(seed: int) -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    labels[:2] = [0, 1]
    scores = np.round(rng.random(60) * (1 + labels), 1)  # coarse: many tied scores
    assert rank_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def cohort(patients: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Two films per patient; positives score higher, with overlap."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.integers(0, 2, patients), 2)
    scores = np.clip(0.35 + 0.3 * labels + rng.normal(0, 0.2, len(labels)), 0, 1)
    return labels, scores, [f"p{i // 2}" for i in range(len(labels))]


def test_intervals_contain_the_point_estimate_and_narrow_with_more_patients() -> None:
    widths = []
    for patients in (40, 400):
        labels, scores, ids = cohort(patients)
        point = rate_metrics(labels, scores, 0.5)
        intervals = bootstrap_intervals(labels, scores, 0.5, ids, resamples=400)
        for name, (low, high) in intervals.items():
            assert low <= point[name] <= high, (patients, name, low, point[name], high)
        widths.append(intervals["roc_auc"][1] - intervals["roc_auc"][0])
    assert widths[1] < widths[0] / 2


def test_a_patients_films_are_resampled_together() -> None:
    labels, scores, ids = cohort(60)
    by_patient = bootstrap_intervals(labels, scores, 0.5, ids, resamples=400)
    by_image = bootstrap_intervals(labels, scores, 0.5, range(len(ids)), resamples=400)
    width = {k: v[1] - v[0] for k, v in by_patient.items()}
    assert width["roc_auc"] > by_image["roc_auc"][1] - by_image["roc_auc"][0]
    assert [len(g) for g in patient_groups(["b", "a", "b", "c"])] == [1, 2, 1]


def test_an_undefined_metric_gets_no_interval() -> None:
    labels = np.ones(20, dtype=int)  # no negatives: specificity, NPV and AUC are undefined
    scores = np.linspace(0.1, 0.9, 20)
    intervals = bootstrap_intervals(labels, scores, 0.5, [str(i) for i in range(20)], 100)
    assert np.isnan(intervals["specificity"]).all() and np.isnan(intervals["roc_auc"]).all()
    assert intervals["sensitivity"][0] <= 0.5 <= intervals["sensitivity"][1]
    empty = bootstrap_intervals(np.zeros(0), np.zeros(0), 0.5, [], 100)
    assert all(np.isnan(bounds).all() for bounds in empty.values())
    assert set(interval_columns(intervals)) == {
        f"{m}_ci_{s}"
        for m in ("roc_auc", "sensitivity", "specificity", "ppv", "npv")
        for s in ("low", "high")
    }


def test_rates_match_hand_counts() -> None:
    labels = np.array([1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.2, 0.7, 0.1])
    assert rate_metrics(labels, scores, 0.5) == pytest.approx(
        {"roc_auc": 5 / 6, "sensitivity": 2 / 3, "specificity": 1 / 2, "ppv": 2 / 3, "npv": 1 / 2}
    )


def test_subgroups_count_their_images_and_leave_undefined_metrics_empty() -> None:
    labels, scores, ids = cohort(80)
    rows = pd.DataFrame(
        {
            "patient_id": ids,
            "subtype": np.where(
                labels == 1, np.where(np.arange(160) % 4 < 2, "bacteria", "virus"), None
            ),
            "width": np.where(np.arange(160) < 100, 900, 2000),
            "height": np.where(np.arange(160) < 100, 800, 1500),
            "mode": "L",
            "bit_depth": 8,
            "source_split": np.where(np.arange(160) % 2 == 0, "train", "test"),
        }
    )
    table = subgroup_table(rows, labels, scores, 0.5, resamples=100).set_index(
        ["grouping", "group"]
    )
    assert (
        table.loc[("megapixels", "<1"), "n"] == 100 and table.loc[("megapixels", "2-4"), "n"] == 60
    )
    assert table.loc[("subtype", "normal"), "positives"] == 0
    virus = table.loc[("subtype", "virus")]
    assert virus["n"] == virus["positives"] and np.isnan(virus["specificity"])
    assert virus["sensitivity_ci_low"] <= virus["sensitivity"] <= virus["sensitivity_ci_high"]
    assert table.groupby(level="grouping")["n"].sum().eq(160).all()


def test_non_inferiority_passes_a_model_against_itself_and_fails_a_clearly_worse_one() -> None:
    from pipeline.settings import GateConfig
    from pipeline.train.gates import decide_gate
    from pipeline.train.uncertainty import compare_auc

    labels, scores, ids = cohort(300)
    rng = np.random.default_rng(7)
    worse = np.clip(scores + rng.normal(0, 0.35, len(scores)), 0, 1)  # much noisier ranking
    metrics = {"roc_auc": 0.9, "sensitivity": 0.9, "specificity": 0.9}
    cfg = GateConfig(max_auc_drop=0.01)

    itself = compare_auc(labels, scores, scores, ids, margin=0.01, resamples=300)
    assert itself.difference == 0 and itself.low == itself.high == 0 and itself.non_inferior
    passed = decide_gate(metrics, metrics, cfg, itself)
    assert passed.passed and passed.reasons[-1].startswith("non-inferior: AUC difference +0.000")

    clearly_worse = compare_auc(labels, worse, scores, ids, margin=0.01, resamples=300)
    assert clearly_worse.high < 0 and clearly_worse.p_value > 0.95
    failed = decide_gate(metrics, metrics, cfg, clearly_worse)
    assert not failed.passed
    assert failed.reasons[0].startswith("non-inferiority not shown: AUC difference -")
    assert "margin -0.010, p " in failed.reasons[0]


def test_a_split_too_small_to_resample_cannot_show_non_inferiority() -> None:
    from pipeline.train.uncertainty import compare_auc

    labels = np.array([1, 1, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    same = compare_auc(labels, scores, scores, ["a", "a", "a", "b"], margin=0.01, resamples=200)
    assert not same.non_inferior and "no interval" in same.describe()
