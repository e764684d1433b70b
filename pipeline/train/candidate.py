"""What a training run records: the registry candidate (tags, params) and the run summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.adapters.registry import Candidate
from pipeline.settings import Settings
from pipeline.train.evaluation import Evaluation
from pipeline.train.fit import TrainedModel
from pipeline.train.gates import GateDecision
from pipeline.train.inputs import PreparedData, input_spec, prepare_image
from pipeline.train.provenance import git_commit


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
        "gate_passed": str(decision.passed).lower(),
        "gate_reasons": "; ".join(decision.reasons)[:4900],
        "profile": settings.profile,
        "image_size": str(spec.size),
        "image_channels": str(spec.channels),
    }
    params = {
        **cfg.model_dump(exclude={"augment"}),
        "image_size": spec.size,
        **{f"augment_{k}": v for k, v in cfg.augment.model_dump().items()},
        "threshold_rule": settings.threshold.rule,
        "target_sensitivity": settings.threshold.target_sensitivity,
        "train_images": len(data.train.paths),
        "val_images": len(data.val.paths),
        "test_images": len(data.test.paths),
        "class_weight": data.class_weight,
        "train_seconds": round(trained.seconds, 1),
        "train_images_per_second": round(trained.images_per_second, 2),
        **{f"train_seconds_{phase}": seconds for phase, seconds in trained.phases.items()},
        **{f"train_epochs_{phase}": epochs for phase, epochs in trained.epochs.items()},
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
    )


@dataclass(frozen=True)
class Registration:
    """Where a candidate landed in the registry, and whether it became champion."""

    model: str
    version: str
    run_id: str
    champion: bool


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


def summarise(
    outcomes: list[ModelOutcome],
    provenance: dict[str, str],
    timings: dict[str, float],
    settings: Settings,
    run_dir: Path,
) -> dict:
    """A JSON-able summary with a markdown rendering for the Prefect artifact."""
    sizes = ", ".join(f"{o.kind} {input_spec(o.trained.model).size} px" for o in outcomes)
    lines = [
        f"# training-pipeline: manifest `{provenance['manifest_id']}`",
        f"Data validation: {provenance['gx_result']}. Profile `{settings.profile}`, "
        f"image size {sizes}.",
        "",
        "| model | version | AUC | sens. | spec. | acc. | threshold | weights | gate | champion |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    models = {}
    for o in outcomes:
        m = o.evaluation.metrics
        moved = o.registered.champion
        champion = "moved here" if moved else f"stays at {o.champion_before or 'none'}"
        lines.append(
            f"| {o.registered.model} | {o.registered.version} | {m['roc_auc']:.3f} "
            f"| {m['sensitivity']:.3f} | {m['specificity']:.3f} | {m['accuracy']:.3f} "
            f"| {o.evaluation.threshold:.3f} | {o.trained.weights_source} "
            f"| {o.decision.summary()} | {champion} |"
        )
        models[o.kind] = {
            **asdict(o.registered),
            "metrics": m,
            "threshold": o.evaluation.threshold,
            "gate_passed": o.decision.passed,
            "gate_reasons": o.decision.reasons,
            "collapsed": o.evaluation.collapsed,
            "champion_version": o.registered.version if moved else o.champion_before,
            "weights_source": o.trained.weights_source,
            "train_images_per_second": round(o.trained.images_per_second, 2),
            "train_phases": o.trained.phases,
            "timings": o.timings,
        }
    lines += [
        f"\n**{o.kind} collapsed**: {o.evaluation.collapsed}"
        for o in outcomes
        if o.evaluation.collapsed
    ]
    lines += ["", "Wall times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items())]
    lines += [
        f"- {o.kind}: " + ", ".join(f"{k} {v}" for k, v in o.timings.items()) for o in outcomes
    ]
    lines += ["", f"Reports: `{run_dir}`"]
    return {
        "manifest_id": provenance["manifest_id"],
        "models": models,
        "timings": timings,
        "report_dir": str(run_dir),
        "markdown": "\n".join(lines),
    }
