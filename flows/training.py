"""The `training-pipeline` Prefect flow: wires pipeline steps into tasks, holds no logic.

ingest -> validate -> prepare -> for each model: train -> evaluate -> re-score champion -> gate
-> register (and move `champion` if the gate passed) -> markdown summary artifact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline import registry
from pipeline.assess import Evaluation, evaluate_candidate, plot_augmentation_grid, rescore_champion
from pipeline.dataset import IngestSummary, ValidationSummary, ingest_dataset, validate_dataset
from pipeline.gates import GateDecision, decide
from pipeline.manifest import load_manifest
from pipeline.provenance import git_commit
from pipeline.settings import Settings
from pipeline.storage import LocalStore, ObjectStore
from pipeline.training import (
    PreparedData,
    TrainedModel,
    prepare_data,
    resolve_weights,
    train_cnn,
    train_resnet,
)


class DataValidationError(RuntimeError):
    """Critical data checks failed; training does not start."""


def open_store(settings: Settings) -> ObjectStore:
    return LocalStore(settings.store_dir)


@task(name="ingest", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def ingest_task(path: str, settings: Settings) -> IngestSummary:
    return ingest_dataset(Path(path), open_store(settings), settings)


@task(name="validate", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def validate_task(settings: Settings) -> ValidationSummary:
    summary = validate_dataset(open_store(settings), settings)
    if not summary.report.success:
        failed = "; ".join(
            f"{c.description}: {', '.join(c.examples[:3])}" for c in summary.report.failures
        )
        raise DataValidationError(
            f"manifest {summary.manifest_id} failed critical checks: {failed}"
        )
    return summary


@task(name="prepare-data", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def prepare_task(settings: Settings, manifest_id: str) -> PreparedData:
    store = open_store(settings)
    _, manifest = load_manifest(store, manifest_id)
    return prepare_data(manifest, store, settings.training, settings.home / "cache")


@task(name="train", cache_policy=NO_CACHE)
def train_task(kind: str, data: PreparedData, settings: Settings) -> TrainedModel:
    cfg = settings.training
    if kind == "cnn":
        return train_cnn(data, cfg)
    weights = resolve_weights(cfg.resnet_weights, open_store(settings), settings.home / "cache")
    return train_resnet(data, cfg, weights)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(
    trained: TrainedModel, data: PreparedData, settings: Settings, out_dir: Path
) -> Evaluation:
    return evaluate_candidate(trained, data, settings.threshold, out_dir)


@task(name="rescore-champion", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def rescore_task(kind: str, data: PreparedData):
    return rescore_champion(registry.MODEL_NAMES[kind], data)


@task(name="gate", cache_policy=NO_CACHE)
def gate_task(evaluation: Evaluation, champion, settings: Settings) -> GateDecision:
    return decide(evaluation.metrics, champion.metrics if champion else None, settings.gates)


@task(name="register", retries=2, retry_delay_seconds=10, cache_policy=NO_CACHE)
def register_task(
    experiment_id: str, candidate: registry.Candidate, model, decision: GateDecision
) -> dict:
    run_id, version = registry.log_candidate(experiment_id, candidate, model)
    name = registry.MODEL_NAMES[candidate.kind]
    if decision.passed:
        registry.move_champion(name, version, f"gate passed in run {run_id}")
    return {"model": name, "version": version, "run_id": run_id, "champion": decision.passed}


@dataclass
class ModelOutcome:
    kind: str
    evaluation: Evaluation
    decision: GateDecision
    registered: dict
    trained: TrainedModel
    champion_version: str | None
    timings: dict[str, float] = field(default_factory=dict)


def candidate_for(
    trained: TrainedModel, evaluation: Evaluation, decision: GateDecision, data: PreparedData,
    settings: Settings, manifest_id: str, gx_result: str, extra_artifacts: list[Path],
) -> registry.Candidate:  # fmt: skip
    cfg = settings.training
    tags = {
        "manifest_id": manifest_id,
        "gx_result": gx_result,
        "git_commit": git_commit(),
        "weights_source": trained.weights_source,
        "threshold": f"{evaluation.threshold:.6f}",
        "threshold_rule": evaluation.threshold_rule,
        "gate_passed": str(decision.passed).lower(),
        "gate_reasons": "; ".join(decision.reasons)[:4900],
        "profile": settings.profile,
        "image_size": str(cfg.image_size),
    }
    params = {
        **cfg.model_dump(exclude={"augment"}),
        **{f"augment_{k}": v for k, v in cfg.augment.model_dump().items()},
        "threshold_rule": settings.threshold.rule,
        "target_sensitivity": settings.threshold.target_sensitivity,
        "train_images": len(data.train.paths),
        "val_images": len(data.val.paths),
        "test_images": len(data.test.paths),
        "class_weight": data.class_weight,
        "train_seconds": round(trained.seconds, 1),
        "train_images_per_second": round(trained.images_per_second, 2),
    }
    return registry.Candidate(
        kind=trained.kind,
        params=params,
        metrics=evaluation.metrics,
        history=trained.history,
        artifacts=[*evaluation.artifacts, *extra_artifacts],
        tags=tags,
        input_example=data_example(data, cfg.image_size),
    )


def data_example(data: PreparedData, size: int):
    from pipeline.inputs import prepare_image

    return prepare_image(Path(data.test.paths[0]).read_bytes(), size)[None]


def timed(timings: dict[str, float], name: str, call, *args, **kwargs):
    start = time.perf_counter()
    result = call(*args, **kwargs)
    timings[name] = round(time.perf_counter() - start, 1)
    return result


@flow(name="training-pipeline", log_prints=True)
def training_pipeline(
    data_path: str | None = None, models: tuple[str, ...] = ("cnn", "resnet")
) -> dict:
    """Ingest (if `data_path`), validate, train and gate each model, register in MLflow."""
    from pipeline.models import inference_copy

    logger = get_run_logger()
    settings = Settings()
    timings: dict[str, float] = {}
    if data_path:
        timed(timings, "ingest", ingest_task, data_path, settings)
    validation = timed(timings, "validate", validate_task, settings)
    gx_result = (
        f"passed {sum(c.success for c in validation.report.checks)}/{len(validation.report.checks)}"
    )
    gx_result += f", {len(validation.report.warnings)} warnings"
    data = timed(timings, "prepare", prepare_task, settings, validation.manifest_id)
    experiment_id = registry.configure(
        settings.tracking_uri(), settings.experiment, settings.artifacts_dir
    )
    run_dir = settings.reports_dir / "training" / time.strftime("%Y%m%dT%H%M%S")
    augment_png = plot_augmentation_grid(data, settings.training, run_dir / "augmentation.png")
    outcomes = []
    for kind in models:
        phase: dict[str, float] = {}
        trained = timed(phase, "train", train_task, kind, data, settings)
        evaluation = timed(
            phase, "evaluate", evaluate_task, trained, data, settings, run_dir / kind
        )
        champion = timed(phase, "rescore_champion", rescore_task, kind, data)
        decision = gate_task(evaluation, champion, settings)
        logger.info("%s gate: %s", kind, decision.summary())
        candidate = candidate_for(
            trained,
            evaluation,
            decision,
            data,
            settings,
            validation.manifest_id,
            gx_result,
            [augment_png],
        )
        registered = timed(
            phase,
            "register",
            register_task,
            experiment_id,
            candidate,
            inference_copy(trained.model),
            decision,
        )
        outcomes.append(
            ModelOutcome(
                kind,
                evaluation,
                decision,
                registered,
                trained,
                champion.version if champion else None,
                phase,
            )
        )
    summary = summarise(outcomes, validation.manifest_id, gx_result, timings, settings, run_dir)
    create_markdown_artifact(
        key="training-summary", markdown=summary["markdown"], description="training-pipeline result"
    )
    return summary


def summarise(outcomes, manifest_id, gx_result, timings, settings: Settings, run_dir: Path) -> dict:
    lines = [
        f"# training-pipeline: manifest `{manifest_id}`",
        f"Data validation: {gx_result}. Profile `{settings.profile}`, image size {settings.training.image_size}.",
        "",
        "| model | version | AUC | sensitivity | specificity | accuracy | threshold | weights | gate | champion |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    models = {}
    for o in outcomes:
        m = o.evaluation.metrics
        champion = (
            "moved here" if o.registered["champion"] else f"stays at {o.champion_version or 'none'}"
        )
        lines.append(
            f"| {o.registered['model']} | {o.registered['version']} | {m['roc_auc']:.3f} | {m['sensitivity']:.3f} "
            f"| {m['specificity']:.3f} | {m['accuracy']:.3f} | {o.evaluation.threshold:.3f} | {o.trained.weights_source} "
            f"| {o.decision.summary()} | {champion} |"
        )
        models[o.kind] = {
            **o.registered,
            "metrics": m,
            "threshold": o.evaluation.threshold,
            "gate_passed": o.decision.passed,
            "gate_reasons": o.decision.reasons,
            "weights_source": o.trained.weights_source,
            "train_images_per_second": o.trained.images_per_second,
            "timings": o.timings,
        }
    lines += [
        "",
        f"Phase wall times (s): {timings} " + " ".join(f"{o.kind}: {o.timings}" for o in outcomes),
    ]
    lines += [f"Reports: `{run_dir}`"]
    return {
        "manifest_id": manifest_id,
        "models": models,
        "timings": timings,
        "report_dir": str(run_dir),
        "markdown": "\n".join(lines),
    }
