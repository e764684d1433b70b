"""Evidently adapter: data drift of per-image features, reference vs current.

The only module that imports evidently (0.7 API). Evidently has no single "dataset drift" flag:
the decision is read from its per-column drift results and our documented rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.monitor.drift_features import EMBEDDING_COLUMNS, FEATURE_COLUMNS
from pipeline.settings import DriftConfig

DRIFT = "drift detected"
NO_DRIFT = "no drift"
INSUFFICIENT = "insufficient data"


@dataclass(frozen=True)
class DriftResult:
    status: str
    current_rows: int
    reference_rows: int
    drifted_columns: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    html: str | None = None

    @property
    def drifted_share(self) -> float:
        return len(self.drifted_columns) / len(FEATURE_COLUMNS)

    def summary(self, rule: str) -> dict:
        return {
            "status": self.status,
            "rule": rule,
            "current_rows": self.current_rows,
            "reference_rows": self.reference_rows,
            "drifted_columns": self.drifted_columns,
            "drifted_share": round(self.drifted_share, 3),
            "scores": self.scores,
        }


def apply_drift_rule(drifted: list[str], cfg: DriftConfig) -> str:
    """The documented rule, on the list of columns Evidently found drifted."""
    if cfg.rule == "embedding":
        return DRIFT if set(drifted) & set(EMBEDDING_COLUMNS) else NO_DRIFT
    return DRIFT if len(drifted) / len(FEATURE_COLUMNS) >= cfg.drift_share else NO_DRIFT


def check_drift(reference: pd.DataFrame, current: pd.DataFrame, cfg: DriftConfig) -> DriftResult:
    """Evidently data drift on FEATURE_COLUMNS; too few current rows is not drift."""
    if len(current) < cfg.min_current:
        return DriftResult(INSUFFICIENT, len(current), len(reference))
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = list(FEATURE_COLUMNS)
    definition = DataDefinition(numerical_columns=columns)
    report = Report(
        [DataDriftPreset(columns=columns, drift_share=cfg.drift_share)], include_tests=True
    )
    # A column that is constant in a batch (every image 224 x 224) has no correlation: numpy
    # warns while Evidently computes its correlation matrices, and the report shows it as empty.
    with np.errstate(invalid="ignore", divide="ignore"):
        snapshot = report.run(
            current_data=Dataset.from_pandas(
                current[columns].astype(float), data_definition=definition
            ),
            reference_data=Dataset.from_pandas(
                reference[columns].astype(float), data_definition=definition
            ),
        )
    scores, drifted = _column_drift(snapshot.dict())
    return DriftResult(
        status=apply_drift_rule(drifted, cfg),
        current_rows=len(current),
        reference_rows=len(reference),
        drifted_columns=drifted,
        scores=scores,
        html=snapshot.get_html_str(as_iframe=False),
    )


def _column_drift(snapshot: dict) -> tuple[dict[str, float], list[str]]:
    """Per-column drift scores, and the columns whose drift test failed."""
    scores: dict[str, float] = {}
    for metric in snapshot["metrics"]:
        config = metric.get("config", {})
        column = config.get("column")
        if config.get("type", "").endswith("ValueDrift") and column:
            scores[column] = round(float(metric["value"]), 4)
    drifted = []
    for test in snapshot.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        column = params.get("column")
        if column and str(test.get("status")).endswith("FAIL"):
            drifted.append(column)
    return scores, sorted(set(drifted))
