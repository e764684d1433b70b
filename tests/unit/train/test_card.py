"""Model card rendering: every section, intervals shown, text escaped, images inlined."""

from __future__ import annotations

import math

from pipeline.train.card import render_html, render_markdown

METRICS = {
    "roc_auc": 0.95, "roc_auc_ci_low": 0.91, "roc_auc_ci_high": 0.98,
    "sensitivity": 0.97, "sensitivity_ci_low": 0.94, "sensitivity_ci_high": 0.99,
    "specificity": 0.8, "specificity_ci_low": 0.7, "specificity_ci_high": 0.88,
    "ppv": 0.9, "npv": math.nan, "ece": 0.03, "ece_uncalibrated": 0.2, "brier": 0.05,
    "brier_uncalibrated": 0.1,
}  # fmt: skip
COUNTS = {"images": 10, "patients": 8, "NORMAL": 4, "PNEUMONIA": 6, "bacterial": 4, "viral": 2}


def card(**changes) -> dict:
    base = {
        "model": "pneumonia-resnet", "version": "3", "run_id": "abc", "created": "2026-11-27",
        "architecture": "ResNet50", "weights_source": "file:/w.h5", "git_commit": "123",
        "data": {"manifest_id": "m1", "gx_result": "passed 9/9",
                 "splits": {"train": COUNTS, "val": COUNTS, "test": COUNTS}},
        "metrics": METRICS,
        "threshold": {"value": 0.4, "rule": "target sensitivity 0.98 on val", "why": "because"},
        "calibration": {"description": "Platt", "why": "auto", "cross_validated_ece": {},
                        "val_prevalence": 0.6},
        "gate": {"passed": True, "reasons": ["AUC 0.95 >= 0.75 <script>alert(1)</script>"]},
        "approval": {"status": "pending"},
        "subgroups": [{"grouping": "subtype", "group": "virus", "n": 2, "roc_auc": None,
                       "sensitivity": 1.0, "specificity": None}],
        "shifts": [{"shift": "none", "n": 10, "roc_auc": 0.95, "sensitivity": 0.97,
                    "specificity": 0.8, "mean_probability": 0.6},
                   {"shift": "inverted", "n": 10, "roc_auc": 0.4, "sensitivity": 0.3,
                    "specificity": 0.9, "mean_probability": 0.2},
                   {"shift": "noise", "n": 10, "roc_auc": 0.9, "sensitivity": 1.0,
                    "specificity": 0.1, "mean_probability": 0.9},
                   {"shift": "blur", "n": 10, "roc_auc": 0.95, "sensitivity": 0.95,
                    "specificity": 0.78, "mean_probability": 0.6}],
    }  # fmt: skip
    return {**base, **changes}


def test_markdown_has_every_section_and_intervals() -> None:
    text = render_markdown(card())
    assert text.count("\n## ") == 10
    assert "| ROC AUC | 0.950 [0.910, 0.980] |" in text
    assert "| NPV | n/a |" in text  # undefined, not a made-up number
    # Measured failure modes, against the same films unshifted.
    assert "Under 'inverted' sensitivity falls from 0.970 to 0.300:" in text
    assert "Under 'noise' specificity falls from 0.800 to 0.100:" in text
    assert "ECE 0.200 before, 0.030 after" in text
    assert "Under 'blur'" not in text  # within the margins


def test_html_escapes_text_and_inlines_images() -> None:
    page = render_html(card(), {"gradcam": b"\x89PNG-gradcam"})
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("data:image/png;base64,") == 1
    assert "Reliability diagram on the test split: not available" in page


def test_a_decision_shows_who_when_and_why() -> None:
    decided = {"status": "approved", "by": "Dr. Ana", "at": "2026-11-27T10:00:00Z", "reason": "ok"}
    text = render_markdown(card(approval=decided))
    assert "Decision: **approved** by Dr. Ana at 2026-11-27T10:00:00Z" in text
    assert "<b>approved</b> by Dr. Ana" in render_html(card(approval=decided), {})


def test_the_intended_use_says_how_every_prediction_is_checked() -> None:
    fitted = {"cutoff": 9.42, "false_flag_rate": 0.02, "reference_films": 787, "test_films": 784}
    fitted["test_flag_rate"] = 0.011
    rules = {"modalities": ["CR", "DX"], "body_parts": ["CHEST"], "views": ["PA", "AP"]}
    text = render_markdown(card(scope={**fitted, "dicom": {**rules, "age_years": [1, 5]}}))
    assert "pooled features above 9.4, the cut-off above which 2% of the 787 validation" in text
    assert "of the 784 carved test films (the same period, not used to set it) the check" in text
    assert "flagged 1.1%" in text
    assert (
        "Modality CR or DX, BodyPartExamined CHEST, ViewPosition PA or AP and PatientAge 1 to 5"
        " years" in text
    )
    assert "no distance to its training films" in render_markdown(card())
