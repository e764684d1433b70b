"""Evidently adapter: the drift check of a batch of predictions against the reference.

The only module that imports evidently (0.7 API). Evidently has no single "dataset drift" flag:
the image-shift decision applies our documented rule to Evidently's default per-column drift
test (the one its report shows); prevalence and data quality come from
`pipeline.monitor.signals` (see there for why three).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from html import escape

import numpy as np
import pandas as pd

from pipeline.monitor.signals import (
    IMAGE_SHIFT_COLUMNS,
    PrevalenceCheck,
    QualityCheck,
    RepresentationCheck,
    ScopeCheck,
    check_prevalence,
    check_quality,
    check_representation,
    check_scope,
    match_class_mix,
)
from pipeline.predict.drift_features import EMBEDDING_COLUMNS
from pipeline.predict.inference_log import DRIFT, INSUFFICIENT, NO_DRIFT, PREVALENCE
from pipeline.settings import DriftConfig


@dataclass(frozen=True)
class DriftResult:
    status: str
    current_rows: int
    reference_rows: int
    drifted_columns: list[str] = field(default_factory=list)  # image-shift columns only
    scores: dict[str, float] = field(default_factory=dict)
    html: str | None = None
    matched_reference_rows: int = 0
    prevalence: PrevalenceCheck | None = None
    quality: QualityCheck | None = None
    scope: ScopeCheck | None = None
    representation: RepresentationCheck | None = None

    @property
    def drifted_share(self) -> float:
        return len(self.drifted_columns) / len(IMAGE_SHIFT_COLUMNS)

    @property
    def image_shift(self) -> bool:
        return self.status == DRIFT

    def summary(self, rule: str) -> dict:
        return {
            "status": self.status,
            "rule": rule,
            "current_rows": self.current_rows,
            "reference_rows": self.reference_rows,
            "matched_reference_rows": self.matched_reference_rows,
            "image_shift": self.image_shift,
            "drifted_columns": self.drifted_columns,
            "drifted_share": round(self.drifted_share, 3),
            "scores": self.scores,
            "prevalence": self.prevalence.summary() if self.prevalence else None,
            "quality": self.quality.summary() if self.quality else None,
            "scope": self.scope.summary() if self.scope else None,
            "representation": self.representation.summary() if self.representation else None,
        }


def apply_drift_rule(drifted: list[str], cfg: DriftConfig) -> bool:
    """The documented image-shift rule, on the columns Evidently found drifted."""
    image = [c for c in drifted if c in IMAGE_SHIFT_COLUMNS]
    if cfg.rule == "embedding":
        return bool(set(image) & set(EMBEDDING_COLUMNS))
    return len(image) / len(IMAGE_SHIFT_COLUMNS) >= cfg.drift_share


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    cfg: DriftConfig,
    threshold: float,
    size_range: tuple[int, int] = (64, 8192),
    html: bool = True,
    rejected: pd.DataFrame | None = None,
    scope_rate: float | None = None,
) -> DriftResult:
    """Image shift, prevalence shift, data quality and films outside the intended use of
    `current` against `reference`.

    Too few current rows is not drift, but data quality is still judged: a window of films
    all refused (16-bit, say) has no scored rows and must not read as quiet. `threshold` is the
    champion's: predicted classes decide the class mix the reference is resampled to and the
    prevalence test. `rejected`: the images refused in the same window. `scope_rate`: the share
    of films the champion's intended-use cut-off flags on its own validation films (None: not
    judged). `html=False` skips the report (nearly all the time of a check; the drift
    benchmark runs thousands).
    """
    quality = check_quality(
        current, *size_range, cfg.blank_std, cfg.quality_max_share, rejected=rejected
    )
    scope = (
        None
        if scope_rate is None
        else check_scope(current, rejected, scope_rate, cfg.prevalence_alpha)
    )
    if len(current) < cfg.min_current:
        return DriftResult(INSUFFICIENT, len(current), len(reference), quality=quality, scope=scope)
    prevalence = check_prevalence(reference, current, threshold, cfg.prevalence_alpha)
    matched = match_class_mix(reference, current, threshold)
    scores, drifted = _column_drift(matched, current)
    drifted = [c for c in drifted if c in IMAGE_SHIFT_COLUMNS]
    representation = check_representation(
        matched, current, cfg.representation_alpha, cfg.representation_permutations
    )
    shifted = apply_drift_rule(drifted, cfg) or representation.shifted
    status = DRIFT if shifted else PREVALENCE if prevalence.shifted else NO_DRIFT
    result = DriftResult(
        status=status,
        current_rows=len(current),
        reference_rows=len(reference),
        drifted_columns=drifted,
        scores=scores,
        matched_reference_rows=len(matched),
        prevalence=prevalence,
        quality=quality,
        scope=scope,
        representation=representation,
    )
    if not html:
        return result
    snapshot = evidently_report(matched, current, cfg)
    page = _with_signals(snapshot.get_html_str(as_iframe=False), result, prevalence, quality, cfg)
    return dataclasses.replace(result, html=page)


# Shown in the report and scored; the probability is for the reviewer (against the class-matched
# reference it reads as the model's confidence, not the mix); the rule ignores it.
REPORT_COLUMNS = (*IMAGE_SHIFT_COLUMNS, "probability")


def _column_drift(
    reference: pd.DataFrame, current: pd.DataFrame
) -> tuple[dict[str, float], list[str]]:
    """Per-column drift scores, and the drifted columns, by Evidently's default test.

    The same choice and threshold its report makes (two-sample KS at p < 0.05 up to 1,000
    reference rows, normed Wasserstein above 0.1 beyond), called directly: building the report
    renders ~80 plotly figures, 2 s a check, which the decision does not need.
    """
    from evidently import ColumnType
    from evidently.legacy.calculations.stattests import get_stattest

    scores: dict[str, float] = {}
    drifted: list[str] = []
    for column in REPORT_COLUMNS:
        ref, cur = (_finite(frame[column]) for frame in (reference, current))
        test = get_stattest(ref, cur, ColumnType.Numerical, None)
        outcome = test(ref, cur, ColumnType.Numerical, None)
        scores[column] = round(float(outcome.drift_score), 4)
        if outcome.drifted:
            drifted.append(column)
    return scores, drifted


def _finite(values: pd.Series) -> pd.Series:
    """The column as Evidently tests it: infinities and missing values dropped."""
    return values.astype(float).replace([np.inf, -np.inf], np.nan).dropna()


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame, cfg: DriftConfig):
    """Evidently's drift report of the image-shift columns and the probability, for the page."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = list(REPORT_COLUMNS)
    definition = DataDefinition(numerical_columns=columns)
    report = Report(
        [DataDriftPreset(columns=columns, drift_share=cfg.drift_share)], include_tests=True
    )
    # A column constant in a batch has no correlation: numpy warns while Evidently computes its
    # correlation matrices, and the report shows it as empty.
    with np.errstate(invalid="ignore", divide="ignore"):
        return report.run(
            current_data=Dataset.from_pandas(
                current[columns].astype(float), data_definition=definition
            ),
            reference_data=Dataset.from_pandas(
                reference[columns].astype(float), data_definition=definition
            ),
        )


def _with_signals(
    html: str,
    result: DriftResult,
    prevalence: PrevalenceCheck,
    quality: QualityCheck,
    cfg: DriftConfig,
) -> str:
    """Evidently's page with the three signals and their actions on top, for the reviewer."""
    low, high = prevalence.band
    rows = [
        (
            "Image shift (retraining trigger)",
            "DRIFT" if result.image_shift else "none",
            f"{len(result.drifted_columns)} of {len(IMAGE_SHIFT_COLUMNS)} image columns drifted "
            f"({', '.join(result.drifted_columns) or 'none'}); rule {cfg.rule!r}, share "
            f"{cfg.drift_share:g}; embedding components together (kernel MMD): p = "
            f"{result.representation.p_value:.4f}, alpha {cfg.representation_alpha:g}; "
            "reference resampled to the batch's predicted class mix: "
            f"{result.matched_reference_rows} of {result.reference_rows} rows",
        ),
        (
            "Prevalence shift (alert only)",
            "ALERT" if prevalence.shifted else "none",
            f"predicted PNEUMONIA rate {prevalence.current_rate:.3f} (band {low:.3f}-{high:.3f} "
            f"for {result.current_rows} images) vs reference {prevalence.reference_rate:.3f}; "
            f"Fisher p = {prevalence.p_value:.4f}, alpha {cfg.prevalence_alpha:g}",
        ),
        (
            "Data quality (alert only)",
            "ALERT" if quality.alert else "none",
            "; ".join(f"{n} {reason}" for reason, n in quality.flagged.items())
            or "no film outside the accepted ranges",
        ),
    ]
    if result.scope is not None:
        scope = result.scope
        rows.append(
            (
                "Outside the intended use (alert only)",
                "ALERT" if scope.alert else "none",
                f"{scope.outside} of {scope.rows} films flagged or refused; the cut-off lets "
                f"{scope.expected_rate:.0%} of validation films through; binomial p = "
                f"{scope.p_value:.4f}, alpha {cfg.prevalence_alpha:g}",
            )
        )
    cells = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(state)}</td><td>{escape(detail)}</td></tr>"
        for name, state, detail in rows
    )
    section = (
        '<section id="pneumo-signals" style="font-family:sans-serif;margin:16px">'
        f"<h2>Drift check: {escape(result.status)}</h2>"
        f'<table border="1" cellpadding="6">{cells}</table>'
        "<p>Below: Evidently's per-column drift of the image columns and the probability, "
        "against the class-matched reference.</p></section>"
    )
    body = html.find(">", html.lower().find("<body")) + 1
    return html[:body] + section + html[body:] if body > 0 else section + html


def classification_report_html(truth: np.ndarray, probability: np.ndarray, threshold: float) -> str:
    """Evidently's classification report of labelled predictions (PNEUMONIA positive) at the
    served threshold: the page a person opens after a performance check."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    frame = pd.DataFrame(
        {
            "target": np.where(np.asarray(truth) == 1, "PNEUMONIA", "NORMAL"),
            "PNEUMONIA": np.asarray(probability, dtype=float),
        }
    )
    definition = DataDefinition(
        classification=[
            BinaryClassification(
                target="target", prediction_probas="PNEUMONIA", pos_label="PNEUMONIA"
            )
        ],
        categorical_columns=["target"],
        numerical_columns=["PNEUMONIA"],
    )
    report = Report([ClassificationPreset(probas_threshold=float(threshold))])
    with np.errstate(invalid="ignore", divide="ignore"):
        snapshot = report.run(current_data=Dataset.from_pandas(frame, data_definition=definition))
    return snapshot.get_html_str(as_iframe=False)
