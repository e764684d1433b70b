"""What a training run records: the registry candidate (tags, params) and the run summary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.adapters.registry import Candidate
from pipeline.clock import now_iso
from pipeline.settings import Settings
from pipeline.train.card import calibration_entry, records, split_counts, threshold_why
from pipeline.train.evaluation import Evaluation
from pipeline.train.fit import TrainedModel
from pipeline.train.gates import GateDecision
from pipeline.train.inputs import PreparedData, input_spec, prepare_image
from pipeline.train.provenance import git_commit
from pipeline.train.uncertainty import with_interval


def build_candidate(
    trained: TrainedModel,
    evaluation: Evaluation,
    decision: GateDecision,
    data: PreparedData,
    settings: Settings,
    provenance: dict[str, str],
    extra_artifacts: list[Path],
) -> Candidate:
    """Tags answer "where did this version come from and may it serve?"; params say how."""
    cfg = settings.training
    # The model's own input: a warm-started champion keeps its size whatever the profile.
    spec = input_spec(trained.model)
    tags = {
        **provenance,
        "git_commit": git_commit(),
        "weights_source": trained.weights_source,
        "threshold": repr(float(evaluation.threshold)),  # full precision: served as evaluated
        "threshold_rule": evaluation.threshold_rule,
        "calibration": evaluation.calibration.describe(),
        "gate_passed": str(decision.passed).lower(),
        "gate_reasons": "; ".join(decision.reasons)[:4900],
        "profile": settings.profile,
        "image_size": str(spec.size),
        "image_channels": str(spec.channels),
    }
    params = {
        **model_params(cfg.model_dump(exclude={"augment"}), trained.kind),
        "image_size": spec.size,
        **{f"augment_{k}": v for k, v in cfg.augment.model_dump().items()},
        "threshold_rule": settings.threshold.rule,
        "calibration_method": settings.calibration.method,
        "target_sensitivity": settings.threshold.target_sensitivity,
        "train_images": len(data.train.paths),
        "val_images": len(data.val.paths),
        "test_images": len(data.test.paths),
        "class_weight": data.class_weight,
        "train_seconds": round(trained.seconds, 1),
        "train_images_per_second": round(trained.images_per_second, 2),
        **{f"train_seconds_{phase}": seconds for phase, seconds in trained.phases.items()},
        **{f"train_epochs_{phase}": epochs for phase, epochs in trained.epochs.items()},
        "kept_epoch": trained.kept_epoch,
    }
    example = prepare_image(Path(data.test.paths[0]).read_bytes(), spec)[None]
    return Candidate(
        kind=trained.kind,
        params=params,
        metrics=evaluation.metrics,
        history=trained.history,
        artifacts=[*evaluation.artifacts, *extra_artifacts],
        tags=tags,
        input_example=example,
        description=describe_version(trained, evaluation, decision, data, provenance),
        started_ms=int(trained.started_at * 1000),
        dataset=manifest_dataset(provenance["manifest_id"], data),
    )


def model_params(config: dict, kind: str) -> dict:
    """The training settings of the model this run trained: a CNN run logs no `resnet_*`
    values and a ResNet run no `cnn_*` ones. The ResNet's requested weights are logged as
    `resnet_weights_requested`: the weights it really has are the `weights_source` tag."""
    other = "resnet_" if kind == "cnn" else "cnn_"
    params = {k: v for k, v in config.items() if not k.startswith(other)}
    if "resnet_weights" in params:
        params["resnet_weights_requested"] = params.pop("resnet_weights")
    return params


def describe_version(
    trained: TrainedModel,
    evaluation: Evaluation,
    decision: GateDecision,
    data: PreparedData,
    provenance: dict[str, str],
) -> str:
    """The registry's description of a version: what, on which data, how good, gate verdict."""
    m = evaluation.metrics
    what = "CNN from scratch" if trained.kind == "cnn" else f"ResNet50 ({trained.weights_source})"
    return (
        f"{what}, trained on manifest {provenance['manifest_id']} ({len(data.train.paths)} train, "
        f"{len(data.val.paths)} val, {len(data.test.paths)} test images). Test (95 % CI by "
        f"patient bootstrap): AUC {with_interval(m, 'roc_auc')}, sensitivity "
        f"{with_interval(m, 'sensitivity')}, specificity {with_interval(m, 'specificity')} at "
        f"threshold {evaluation.threshold:.3f} (calibrated: {evaluation.calibration.describe()}; "
        f"test ECE {m['ece_uncalibrated']:.3f} -> {m['ece']:.3f}). Gate "
        f"{decision.summary()}"
    )[:4900]


def manifest_dataset(manifest_id: str, data: PreparedData) -> dict[str, str]:
    """The training manifest as an MLflow dataset input: its id is its content digest."""
    counts = {
        split: {"images": len(part.paths), "pneumonia": int(part.labels.sum())}
        for split, part in (("train", data.train), ("val", data.val), ("test", data.test))
    }
    return {
        "name": f"manifest-{manifest_id}",
        "digest": manifest_id[:36],
        "source": f"manifests/{manifest_id}.parquet",
        "profile": json.dumps(counts),
    }


@dataclass(frozen=True)
class Registration:
    """Where a candidate landed in the registry, and whether it became champion."""

    model: str
    version: str
    run_id: str
    champion: bool
    pending_approval: bool = False  # passed its gate, waits for a person (PNEUMO_APPROVAL)
    card_uri: str = ""
    approval: str = ""  # the person's decision ("approved by ana"), or why the champion waits


@dataclass
class ModelOutcome:
    """One model's result in a run, as the summary reports it."""

    kind: str
    evaluation: Evaluation
    decision: GateDecision
    registered: Registration
    trained: TrainedModel
    champion_before: str | None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSummary:
    """One model of a training run: where it landed, how it measured, what it trained from."""

    model: str
    version: str
    run_id: str
    champion: bool  # whether `champion` moved to this version
    champion_version: str | None  # the champion after the run (this version or the one before)
    approval: str
    card_uri: str
    metrics: dict[str, float]  # test split, with patient-bootstrap interval columns
    threshold: float
    calibration: str
    gate_passed: bool
    gate_reasons: list[str]
    collapsed: str | None
    image_size: int
    weights_source: str
    train_images_per_second: float
    train_phases: dict[str, float]
    timings: dict[str, float]


@dataclass(frozen=True)
class TrainingSummary:
    """What a training or retraining run returns; `flows.output` renders it."""

    manifest_id: str
    validation: str  # the Great Expectations result of the manifest
    profile: str
    models: dict[str, ModelSummary]  # by kind: cnn, resnet
    timings: dict[str, float]
    report_dir: str


def summarise(
    outcomes: list[ModelOutcome],
    provenance: dict[str, str],
    timings: dict[str, float],
    settings: Settings,
    run_dir: Path,
) -> TrainingSummary:
    """The run's summary: per model its version, metrics, gate and what it trained from."""
    models = {
        o.kind: ModelSummary(
            model=o.registered.model,
            version=o.registered.version,
            run_id=o.registered.run_id,
            champion=o.registered.champion,
            champion_version=o.registered.version if o.registered.champion else o.champion_before,
            approval=o.registered.approval,
            card_uri=o.registered.card_uri,
            metrics=o.evaluation.metrics,
            threshold=o.evaluation.threshold,
            calibration=o.evaluation.calibration.describe(),
            gate_passed=o.decision.passed,
            gate_reasons=o.decision.reasons,
            collapsed=o.evaluation.collapsed,
            image_size=input_spec(o.trained.model).size,
            weights_source=o.trained.weights_source,
            train_images_per_second=round(o.trained.images_per_second, 2),
            train_phases=o.trained.phases,
            timings=o.timings,
        )
        for o in outcomes
    }
    return TrainingSummary(
        provenance["manifest_id"], provenance["gx_result"], settings.profile, models, timings,
        str(run_dir),
    )  # fmt: skip


def collect_card(
    registered: Registration,
    trained: TrainedModel,
    evaluation: Evaluation,
    decision: GateDecision,
    data: PreparedData,
    settings: Settings,
    provenance: dict[str, str],
    approval: dict[str, str],
) -> dict:
    """Everything the model card shows, as measured by this run (JSON-able)."""
    kind = "CNN from scratch" if trained.kind == "cnn" else "ResNet50, ImageNet transfer learning"
    return {
        "model": registered.model,
        "version": registered.version,
        "run_id": registered.run_id,
        "created": now_iso(),
        "architecture": f"{kind}, {input_spec(trained.model).size} px grayscale input",
        "weights_source": trained.weights_source,
        "git_commit": git_commit(),
        "data": {
            "manifest_id": provenance["manifest_id"],
            "gx_result": provenance["gx_result"],
            "judged_on": (
                "site's held-out films (split site; the threshold was chosen on them)"
                if data.on_site
                else "test split"
            ),
            "splits": {
                name: split_counts(part.rows, part.labels)
                for name, part in (("train", data.train), ("val", data.val), ("test", data.test))
            },
        },
        "metrics": evaluation.metrics,
        "threshold": {
            "value": evaluation.threshold,
            "rule": evaluation.threshold_rule,
            "why": threshold_why(settings.threshold),
        },
        "calibration": calibration_entry(evaluation.calibration, data.val.labels),
        "gate": {"passed": decision.passed, "reasons": decision.reasons},
        "approval": approval,
        "subgroups": records(evaluation.subgroups),
        "shifts": records(evaluation.shifts),
    }
