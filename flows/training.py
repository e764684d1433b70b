"""The `training-pipeline` Prefect flow: wires pipeline steps into tasks, holds no logic.

ingest -> validate -> prepare -> for each model: train -> evaluate -> re-score champion -> gate
-> register (and move `champion` if the gate passed) -> markdown summary artifact.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline import registry
from pipeline.assess import (
    ChampionScore,
    Evaluation,
    evaluate_candidate,
    plot_augmentation_grid,
    rescore_champion,
)
from pipeline.dataset import IngestSummary, ValidationSummary, ingest_dataset, validate_dataset
from pipeline.gates import GateDecision, decide
from pipeline.manifest import load_manifest
from pipeline.models import inference_copy
from pipeline.monitoring import reference_profile
from pipeline.report import ModelOutcome, build_candidate, summarise
from pipeline.settings import Settings
from pipeline.storage import open_store
from pipeline.training import (
    PreparedData,
    TrainedModel,
    prepare_data,
    resolve_weights,
    train_cnn,
    train_resnet,
)

# Tasks pass models and frames in memory; hashing them for Prefect's cache would cost more than
# recomputing, so caching is off and I/O tasks retry instead.
IO = {"retries": 2, "retry_delay_seconds": 5, "cache_policy": NO_CACHE}


class DataValidationError(RuntimeError):
    """Critical data checks failed; training does not start."""


@task(name="ingest", **IO)
def ingest_task(path: str, settings: Settings) -> IngestSummary:
    return ingest_dataset(Path(path), open_store(settings), settings)


@task(name="validate", **IO)
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


@task(name="prepare-data", **IO)
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


@task(name="rescore-champion", **IO)
def rescore_task(kind: str, data: PreparedData) -> ChampionScore | None:
    return rescore_champion(registry.MODEL_NAMES[kind], data)


@task(name="gate", cache_policy=NO_CACHE)
def gate_task(
    evaluation: Evaluation, champion: ChampionScore | None, settings: Settings
) -> GateDecision:
    return decide(evaluation.metrics, champion.metrics if champion else None, settings.gates)


@task(name="register", **IO)
def register_task(
    experiment_id: str, candidate: registry.Candidate, trained: TrainedModel, passed: bool
) -> dict:
    run_id, version = registry.log_candidate(
        experiment_id, candidate, inference_copy(trained.model)
    )
    name = registry.MODEL_NAMES[candidate.kind]
    if passed:
        registry.move_champion(name, version, f"gate passed in run {run_id}")
    return {"model": name, "version": version, "run_id": run_id, "champion": passed}


@task(name="reference-profile", **IO)
def reference_task(trained: TrainedModel, data: PreparedData, run_id: str) -> None:
    features, projection = reference_profile(trained.model, data.train.paths)
    registry.log_reference(run_id, features, projection.to_json())


def timed(timings: dict[str, float], name: str, call, *args):
    start = time.perf_counter()
    result = call(*args)
    timings[name] = round(time.perf_counter() - start, 1)
    return result


def gate_and_register(
    trained: TrainedModel,
    data: PreparedData,
    settings: Settings,
    context: dict,
    phase: dict[str, float],
) -> ModelOutcome:
    """Evaluate, re-score the champion, gate, register (moving `champion` on a pass)."""
    kind = trained.kind
    run_dir: Path = context["run_dir"]
    evaluation = timed(phase, "evaluate", evaluate_task, trained, data, settings, run_dir / kind)
    champion = timed(phase, "rescore_champion", rescore_task, kind, data)
    decision = gate_task(evaluation, champion, settings)
    get_run_logger().info("%s gate: %s", kind, decision.summary())
    candidate = build_candidate(
        trained, evaluation, decision, data, settings, context["provenance"], context["artifacts"]
    )
    registered = timed(
        phase,
        "register",
        register_task,
        context["experiment_id"],
        candidate,
        trained,
        decision.passed,
    )
    if kind == "resnet":  # the monitored model: drift is judged against what it saw
        timed(phase, "reference_profile", reference_task, trained, data, registered["run_id"])
    before = champion.version if champion else None
    return ModelOutcome(kind, evaluation, decision, registered, trained, before, phase)


def prepare_run(
    settings: Settings, timings: dict[str, float], data_path: str | None
) -> tuple[PreparedData, dict]:
    """Ingest (optional), validate, prepare data, and set up MLflow and the report folder."""
    if data_path:
        timed(timings, "ingest", ingest_task, data_path, settings)
    validation = timed(timings, "validate", validate_task, settings)
    report = validation.report
    provenance = {
        "manifest_id": validation.manifest_id,
        "gx_result": f"passed {sum(c.success for c in report.checks)}/{len(report.checks)}"
        f" critical+warning checks, {len(report.warnings)} warnings",
    }
    data = timed(timings, "prepare", prepare_task, settings, validation.manifest_id)
    experiment_id = registry.configure(
        settings.tracking_uri(), settings.experiment, settings.artifacts_dir
    )
    run_dir = settings.reports_dir / "training" / time.strftime("%Y%m%dT%H%M%S")
    augment_png = plot_augmentation_grid(data, settings.training, run_dir / "augmentation.png")
    context = {
        "provenance": provenance,
        "experiment_id": experiment_id,
        "run_dir": run_dir,
        "artifacts": [augment_png],
    }
    return data, context


@flow(name="training-pipeline", log_prints=True)
def training_pipeline(
    data_path: str | None = None, models: tuple[str, ...] = ("cnn", "resnet")
) -> dict:
    """Ingest (if `data_path`), validate, train and gate each model, register in MLflow."""
    settings = Settings()
    timings: dict[str, float] = {}
    data, context = prepare_run(settings, timings, data_path)
    outcomes = []
    for kind in models:
        phase: dict[str, float] = {}
        trained = timed(phase, "train", train_task, kind, data, settings)
        outcomes.append(gate_and_register(trained, data, settings, context, phase))
    summary = summarise(outcomes, context["provenance"], timings, settings, context["run_dir"])
    create_markdown_artifact(
        key="training-summary", markdown=summary["markdown"], description="training-pipeline"
    )
    return summary
