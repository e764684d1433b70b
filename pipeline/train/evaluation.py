"""Evaluation: calibration and threshold on val, metrics and plots on test; champion re-scoring."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from pipeline.adapters.registry import Registry, threshold_of
from pipeline.files import atomic_path, write_atomic
from pipeline.settings import CalibrationConfig, Settings
from pipeline.train.calibration import (
    Calibration,
    brier_score,
    calibrate_model,
    choose_calibration,
    expected_calibration_error,
    head_logits,
    plot_reliability,
    score_features,
    strip_calibration,
)
from pipeline.train.fit import TrainedModel
from pipeline.train.gradcam import plot_gradcam_grid
from pipeline.train.inputs import (
    PreparedData,
    SplitData,
    input_spec,
    make_dataset,
    predict_files,
    predict_outputs,
)
from pipeline.train.metrics import (
    choose_threshold,
    classification_report,
    collapse_note,
    compute_metrics,
)
from pipeline.train.models import HEAD_LAYER
from pipeline.train.plots import plot_confusion, plot_roc_pr, plot_training_curves
from pipeline.train.robustness import measure_under_shifts
from pipeline.train.uncertainty import (
    bootstrap_intervals,
    interval_columns,
    rate_metrics,
    subgroup_table,
)


@dataclass
class Evaluation:
    threshold: float
    threshold_rule: str
    metrics: dict[str, float]
    report: str
    artifacts: list[Path] = field(default_factory=list)
    collapsed: str | None = None  # why the model counts as collapsed (`collapse_note`)
    test_scores: np.ndarray | None = None  # per test image, for the paired champion comparison
    calibration: Calibration = field(default_factory=lambda: Calibration("none", "not fitted"))
    model: keras.Model | None = None  # the calibrated model: what is registered and served
    subgroups: pd.DataFrame = field(default_factory=pd.DataFrame)
    shifts: pd.DataFrame = field(default_factory=pd.DataFrame)  # `measure_under_shifts`


@dataclass(frozen=True)
class SplitScores:
    """Calibrated val and test scores, the test scores before calibration, and the model."""

    calibration: Calibration
    model: keras.Model
    val: np.ndarray
    test: np.ndarray
    test_uncalibrated: np.ndarray


def score_calibrated(
    trained: TrainedModel, data: PreparedData, cfg: CalibrationConfig
) -> SplitScores:
    """Fit the calibrator on val and score both splits with the calibrated model.

    The images go through the network once: the head's input features are kept and the
    (un)calibrated heads are applied to them.
    """
    features_of = keras.Model(trained.model.inputs, trained.model.get_layer(HEAD_LAYER).input)
    val_features = predict_outputs(features_of, data.val.paths)
    test_features = predict_outputs(features_of, data.test.paths)
    patients = data.val.rows["patient_id"].astype(str).tolist()
    logits = head_logits(trained.model, val_features)
    calibration = choose_calibration(data.val.labels, logits, patients, cfg)
    model = calibrate_model(trained.model, calibration)
    return SplitScores(
        calibration,
        model,
        score_features(model, val_features),
        score_features(model, test_features),
        score_features(strip_calibration(trained.model), test_features),
    )


def evaluate_candidate(
    trained: TrainedModel,
    data: PreparedData,
    settings: Settings,
    out_dir: Path,
) -> Evaluation:
    """Calibrate and pick the threshold on val, measure on test, write plots and reports.

    Test metrics carry 95 % intervals from a patient-level bootstrap (`*_ci_low`/`_high`);
    `subgroups.csv` holds them per subtype and acquisition subgroup. A model whose test scores
    spread less than `gates.min_score_range` is reported as collapsed.
    """
    scores = score_calibrated(trained, data, settings.calibration)
    threshold, rule = choose_threshold(data.val.labels, scores.val, settings.threshold)
    labels = data.test.labels
    if data.on_site:  # the site's own films set its threshold (as `pneumo site accept` does)
        threshold, rule = choose_threshold(labels, scores.test, settings.threshold)
        rule = rule.replace("on val", "on the site's held-out films")
    metrics = compute_metrics(labels, scores.test, threshold, data.test.rows["subtype"])
    if data.carved_test is not None:  # regression check on films of the training period
        carved = predict_files(scores.model, data.carved_test.paths)
        metrics["carved_test_roc_auc"] = rate_metrics(data.carved_test.labels, carved, 0.5)[
            "roc_auc"
        ]
    patients = data.test.rows["patient_id"].tolist()
    metrics |= interval_columns(bootstrap_intervals(labels, scores.test, threshold, patients))
    metrics |= calibration_metrics(labels, scores, settings.calibration.bins)
    report = classification_report(labels, scores.test, threshold)
    collapsed = collapse_note(metrics, settings.gates.min_score_range)
    if collapsed:
        report = f"WARNING: {collapsed}\n\n{report}"
    subgroups = subgroup_table(data.test.rows, labels, scores.test, threshold)
    shifts = measure_under_shifts(scores.model, data.test, threshold, settings.shift_check_images)
    write_atomic(out_dir / "classification_report.txt", report)
    tables = write_tables(out_dir, metrics, scores, subgroups, shifts)
    write_predictions(data, scores, threshold, out_dir)
    artifacts = [out_dir / "classification_report.txt", *tables]
    artifacts += [out_dir / "test_predictions.csv", out_dir / "val_predictions.csv"]
    artifacts += draw_figures(trained, data, scores, metrics, settings, out_dir)
    return Evaluation(
        threshold, rule, metrics, report, artifacts, collapsed, scores.test, scores.calibration,
        scores.model, subgroups, shifts,
    )  # fmt: skip


def write_tables(
    out_dir: Path,
    metrics: dict[str, float],
    scores: SplitScores,
    subgroups: pd.DataFrame,
    shifts: pd.DataFrame,
) -> list[Path]:
    """metrics.json, calibration.json, subgroups.csv and shift_robustness.csv."""
    write_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    write_atomic(out_dir / "calibration.json", json.dumps(scores.calibration.to_dict(), indent=2))
    for name, frame in (("subgroups.csv", subgroups), ("shift_robustness.csv", shifts)):
        with atomic_path(out_dir / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.4f")
    names = ("metrics.json", "calibration.json", "subgroups.csv", "shift_robustness.csv")
    return [out_dir / name for name in names]


def draw_figures(
    trained: TrainedModel,
    data: PreparedData,
    scores: SplitScores,
    metrics: dict[str, float],
    settings: Settings,
    out_dir: Path,
) -> list[Path]:
    """Confusion matrix, ROC/PR, reliability diagram, Grad-CAM examples, training curves."""
    labels, threshold = data.test.labels, metrics["threshold"]
    title = f"{trained.kind} (test, n={len(scores.test)})"
    figures = [
        plot_confusion(metrics, out_dir / "confusion_matrix.png", title),
        plot_roc_pr(labels, scores.test, metrics, out_dir / "roc_pr.png", title),
        plot_reliability(
            labels,
            scores.test_uncalibrated,
            scores.test,
            settings.calibration.bins,
            out_dir / "reliability.png",
            f"{title}: {scores.calibration.describe()}",
        ),
        plot_gradcam_examples(
            scores.model, data.test, scores.test, threshold, out_dir / "gradcam.png"
        ),
    ]
    if trained.history:
        figures.append(
            plot_training_curves(
                trained.history, out_dir / "training_curves.png", trained.kind, trained.kept_epoch
            )
        )
    return figures


def calibration_metrics(labels: np.ndarray, scores: SplitScores, bins: int) -> dict[str, float]:
    """ECE and Brier score on test, after and before calibration."""
    return {
        "ece": expected_calibration_error(labels, scores.test, bins),
        "brier": brier_score(labels, scores.test),
        "ece_uncalibrated": expected_calibration_error(labels, scores.test_uncalibrated, bins),
        "brier_uncalibrated": brier_score(labels, scores.test_uncalibrated),
    }


def write_predictions(
    data: PreparedData, scores: SplitScores, threshold: float, out_dir: Path
) -> None:
    """Per-image test predictions, and the val scores the threshold was chosen on (to audit the
    choice or study another rule); both calibrated."""
    predicted = np.where(scores.test >= threshold, "PNEUMONIA", "NORMAL")
    test = data.test.rows[["path", "label", "subtype", "patient_id"]].assign(
        probability=scores.test,
        probability_uncalibrated=scores.test_uncalibrated,
        predicted=predicted,
    )
    with atomic_path(out_dir / "test_predictions.csv") as tmp:
        test.to_csv(tmp, index=False)
    with atomic_path(out_dir / "val_predictions.csv") as tmp:
        data.val.rows[["path", "label", "patient_id"]].assign(probability=scores.val).to_csv(
            tmp, index=False
        )


def pick_examples(labels: np.ndarray, predicted: np.ndarray, per_group: int = 2) -> list[int]:
    """Indices of up to `per_group` right and wrong predictions for each true class."""
    picked: list[int] = []
    for label in (0, 1):
        for correct in (True, False):
            mask = (labels == label) & ((predicted == labels) == correct)
            picked.extend(np.flatnonzero(mask)[:per_group].tolist())
    return picked


def plot_gradcam_examples(
    model: keras.Model, split: SplitData, scores: np.ndarray, threshold: float, out: Path
) -> Path:
    predicted = (scores >= threshold).astype(int)
    indices = pick_examples(split.labels.astype(int), predicted)
    dataset = make_dataset(
        [split.paths[i] for i in indices],
        split.labels[indices],
        input_spec(model),
        len(indices),
    )
    images = next(iter(dataset))[0].numpy()
    names = [Path(p).name for p in split.rows["path"]]
    classes = ("NORMAL", "PNEUMONIA")
    captions = [
        f"{names[i]}\ntrue {classes[int(split.labels[i])]}\n"
        f"predicted {classes[int(predicted[i])]} (p={scores[i]:.2f})"
        f"{'' if predicted[i] == split.labels[i] else ' WRONG'}"
        for i in indices
    ]
    return plot_gradcam_grid(model, images, captions, out)


@dataclass(frozen=True)
class ChampionScore:
    version: str
    metrics: dict[str, float]
    scores: np.ndarray | None = None  # per test image, in the candidate's test order


def rescore_champion(
    registry: Registry, model_name: str, data: PreparedData
) -> ChampionScore | None:
    """The current champion measured now, on this test split, at its own threshold."""
    current = registry.champion_version(model_name)
    if current is None:
        return None
    model = registry.load_version(model_name, str(current.version))
    threshold = threshold_of(current)
    scores = predict_files(model, data.test.paths)
    metrics = compute_metrics(data.test.labels, scores, threshold, data.test.rows["subtype"])
    return ChampionScore(str(current.version), metrics, scores)
