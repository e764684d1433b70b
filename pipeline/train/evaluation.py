"""Evaluation: threshold on val, metrics and plots on test; champion re-scoring."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.adapters.registry import Registry, threshold_of
from pipeline.files import atomic_path, write_atomic
from pipeline.settings import ThresholdConfig
from pipeline.train.fit import TrainedModel
from pipeline.train.gradcam import plot_gradcam_grid
from pipeline.train.inputs import PreparedData, SplitData, input_spec, make_dataset, predict_files
from pipeline.train.metrics import (
    choose_threshold,
    classification_report,
    collapse_note,
    compute_metrics,
)
from pipeline.train.plots import plot_confusion, plot_roc_pr, plot_training_curves
from pipeline.train.uncertainty import bootstrap_intervals, interval_columns, subgroup_table


@dataclass
class Evaluation:
    threshold: float
    threshold_rule: str
    metrics: dict[str, float]
    report: str
    artifacts: list[Path] = field(default_factory=list)
    collapsed: str | None = None  # why the model counts as collapsed (`collapse_note`)
    test_scores: np.ndarray | None = None  # per test image, for the paired champion comparison


def evaluate_candidate(
    trained: TrainedModel,
    data: PreparedData,
    cfg: ThresholdConfig,
    out_dir: Path,
    collapse_range: float = 0.0,
) -> Evaluation:
    """Pick the threshold on val, measure on test, write the plots and reports to `out_dir`.

    Test metrics carry 95 % intervals from a patient-level bootstrap (`*_ci_low`/`_high`);
    `subgroups.csv` holds them per subtype and acquisition subgroup.
    A model whose test scores spread less than `collapse_range` is reported as collapsed.
    """
    val_scores = predict_files(trained.model, data.val.paths)
    threshold, rule = choose_threshold(data.val.labels, val_scores, cfg)
    test_scores = predict_files(trained.model, data.test.paths)
    metrics = compute_metrics(data.test.labels, test_scores, threshold, data.test.rows["subtype"])
    intervals = bootstrap_intervals(
        data.test.labels, test_scores, threshold, data.test.rows["patient_id"].tolist()
    )
    metrics |= interval_columns(intervals)
    title = f"{trained.kind} (test, n={len(test_scores)})"
    report = classification_report(data.test.labels, test_scores, threshold)
    collapsed = collapse_note(metrics, collapse_range)
    if collapsed:
        report = f"WARNING: {collapsed}\n\n{report}"
    write_atomic(out_dir / "classification_report.txt", report)
    write_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    subgroups = subgroup_table(data.test.rows, data.test.labels, test_scores, threshold)
    with atomic_path(out_dir / "subgroups.csv") as tmp:
        subgroups.to_csv(tmp, index=False, float_format="%.4f")
    predictions = data.test.rows[["path", "label", "subtype", "patient_id"]].assign(
        probability=test_scores, predicted=np.where(test_scores >= threshold, "PNEUMONIA", "NORMAL")
    )
    with atomic_path(out_dir / "test_predictions.csv") as tmp:
        predictions.to_csv(tmp, index=False)
    # The scores the threshold was chosen on: to audit the choice or study another rule.
    val_columns = ["path", "label", "patient_id"]
    with atomic_path(out_dir / "val_predictions.csv") as tmp:
        data.val.rows[val_columns].assign(probability=val_scores).to_csv(tmp, index=False)
    artifacts = [
        out_dir / "classification_report.txt",
        out_dir / "metrics.json",
        out_dir / "subgroups.csv",
        out_dir / "test_predictions.csv",
        out_dir / "val_predictions.csv",
        plot_confusion(metrics, out_dir / "confusion_matrix.png", title),
        plot_roc_pr(data.test.labels, test_scores, metrics, out_dir / "roc_pr.png", title),
        plot_gradcam_examples(trained, data.test, test_scores, threshold, out_dir / "gradcam.png"),
    ]
    if trained.history:
        artifacts.append(
            plot_training_curves(trained.history, out_dir / "training_curves.png", trained.kind)
        )
    return Evaluation(threshold, rule, metrics, report, artifacts, collapsed, test_scores)


def pick_examples(labels: np.ndarray, predicted: np.ndarray, per_group: int = 2) -> list[int]:
    """Indices of up to `per_group` right and wrong predictions for each true class."""
    picked: list[int] = []
    for label in (0, 1):
        for correct in (True, False):
            mask = (labels == label) & ((predicted == labels) == correct)
            picked.extend(np.flatnonzero(mask)[:per_group].tolist())
    return picked


def plot_gradcam_examples(
    trained: TrainedModel, split: SplitData, scores: np.ndarray, threshold: float, out: Path
) -> Path:
    predicted = (scores >= threshold).astype(int)
    indices = pick_examples(split.labels.astype(int), predicted)
    dataset = make_dataset(
        [split.paths[i] for i in indices],
        split.labels[indices],
        input_spec(trained.model),
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
    return plot_gradcam_grid(trained.model, images, captions, out)


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
