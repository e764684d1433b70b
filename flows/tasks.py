"""Prefect tasks over the pipeline steps, and the sequences both training flows share.

Tasks only call steps; what a step needs (store, registry) is built from the settings inside the
task, so a flow run on a worker resolves its own environment.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ParamSpec, TypeVar

from prefect import Task, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import State

from flows.approval import wait_for_approval
from flows.guard import champion_guard
from flows.output import progress_bar, training_markdown
from pipeline.adapters.backends import is_transient, open_store
from pipeline.adapters.registry import MODEL_NAMES, Reference, Registry
from pipeline.data.steps import (
    IngestSummary,
    LabeledSummary,
    ValidationSummary,
    add_labeled,
    count_new_labeled,
    ingest_dataset,
    require_valid,
    validate_dataset,
)
from pipeline.faults import checkpoint
from pipeline.monitor.compare import ShadowComparison, last_comparison, missing_evidence
from pipeline.monitor.labels import LabelsAdded
from pipeline.monitor.performance import PerformanceCheck
from pipeline.monitor.steps import (
    DriftCheck,
    add_labels_from,
    profile_reference,
    run_drift_check,
    run_performance_check,
    run_shadow_comparison,
)
from pipeline.predict.champion import MONITORED_MODEL
from pipeline.redact import redacting
from pipeline.settings import Settings
from pipeline.train.approval import (
    FLOW_RUN_TAG,
    ApprovalDecision,
    apply_decision,
    approval_request,
)
from pipeline.train.candidate import ModelOutcome, Registration, TrainingSummary
from pipeline.train.evaluation import ChampionScore, Evaluation
from pipeline.train.fit import TrainedModel
from pipeline.train.gates import GateDecision
from pipeline.train.inputs import PreparedData
from pipeline.train.steps import (
    RunContext,
    adopt_calibrated,
    evaluate_model,
    fine_tune_champion,
    gate_model,
    prepare_training_data,
    register_model,
    rescore_current_champion,
    start_run,
    train_model,
)


def retry_if_transient(_task, _task_run, state: State) -> bool:
    """Retry only what another attempt may fix (network, 5xx, a locked database)."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


# Tasks pass models and frames in memory; hashing them for Prefect's cache would cost more than
# recomputing, so caching is off and I/O tasks retry instead, on transient errors only: a
# retried `register` after its version was created would register a second one, and bad input
# fails the same way every time.
IO = {
    "retries": 2,
    "retry_delay_seconds": 5,
    "retry_condition_fn": retry_if_transient,
    "cache_policy": NO_CACHE,
}
COMPUTE = {"cache_policy": NO_CACHE}
P = ParamSpec("P")
R = TypeVar("R")


def step(name: str, options: dict) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A Prefect task whose end is the named step boundary `<name>:done`.

    The fault tests pause there (`pipeline.faults.checkpoint`) to kill the CLI between steps.
    An error message holding a secret is re-raised masked (`pipeline.redact.redacting`).
    A task hook would also do, but Prefect logs two lines for each hook it runs.
    """

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        @functools.wraps(function)
        def run_step(*args: P.args, **kwargs: P.kwargs) -> R:
            result = function(*args, **kwargs)
            checkpoint(f"{name}:done")
            return result

        # A failed task's message is stored with its state: no secret may be in it.
        return task(name=name, **options)(redacting(run_step))

    return decorate


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Record the wall time of the block under `name` (seconds, one decimal)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 1)


@step("ingest", IO)
def ingest_task(path: str, settings: Settings) -> IngestSummary:
    return ingest_dataset(Path(path), open_store(settings), settings)


@step("add-labeled", IO)
def labeled_task(path: str, settings: Settings) -> LabeledSummary:
    return add_labeled(Path(path), open_store(settings), settings)


@step("count-new-labels", IO)
def new_labels_task(settings: Settings) -> int:
    """Images in the labelled inbox that a retrain would add (0 without an inbox)."""
    inbox = settings.drift.labeled_inbox
    return count_new_labeled(inbox, open_store(settings), settings) if inbox else 0


@step("validate", IO)
def validate_task(settings: Settings) -> ValidationSummary:
    return require_valid(validate_dataset(open_store(settings), settings))


@step("prepare-data", IO)
def prepare_task(settings: Settings, manifest_id: str) -> PreparedData:
    return prepare_training_data(open_store(settings), settings, manifest_id)


@step("train", COMPUTE)
def train_task(kind: str, data: PreparedData, settings: Settings) -> TrainedModel:
    return train_model(kind, data, open_store(settings), settings)


@step("warm-start", IO)
def warm_start_task(data: PreparedData, settings: Settings) -> tuple[TrainedModel, str]:
    return fine_tune_champion(Registry.from_settings(settings), data, settings)


@step("evaluate", COMPUTE)
def evaluate_task(
    trained: TrainedModel, data: PreparedData, settings: Settings, out_dir: Path
) -> Evaluation:
    return evaluate_model(trained, data, settings, out_dir)


@step("rescore-champion", IO)
def rescore_task(kind: str, data: PreparedData, settings: Settings) -> ChampionScore | None:
    return rescore_current_champion(Registry.from_settings(settings), kind, data)


@step("gate", COMPUTE)
def gate_task(
    evaluation: Evaluation, champion: ChampionScore | None, data: PreparedData, settings: Settings
) -> GateDecision:
    return gate_model(evaluation, champion, data, settings)


# Never retried: a retry after the version was created would register a second one.
@step("register", COMPUTE)
def register_task(
    trained: TrainedModel,
    evaluation: Evaluation,
    decision: GateDecision,
    data: PreparedData,
    context: RunContext,
    reference: Reference | None,
    settings: Settings,
    has_champion: bool,
) -> Registration:
    registry = Registry.from_settings(settings)
    # A first champion cannot wait for shadow evidence: without one there is no traffic.
    hold = has_champion and shadow_required(settings, MODEL_NAMES[trained.kind])
    return register_model(
        registry, trained, evaluation, decision, data, context, settings, reference, hold
    )


@step("apply-approval", IO)
def approval_task(
    registered: Registration,
    answer: ApprovalDecision,
    champion_at_gate: str | None,
    settings: Settings,
) -> Registration:
    missing = None
    if answer.approved and shadow_required(settings, registered.model):
        missing = missing_evidence(last_comparison(open_store(settings)), registered.version)
    return apply_decision(
        Registry.from_settings(settings), registered, answer, champion_at_gate, missing
    )


def shadow_required(settings: Settings, model: str) -> bool:
    return settings.promotion.require_shadow_evidence and model == MONITORED_MODEL


@step("reference-profile", COMPUTE)
def reference_task(trained: TrainedModel, data: PreparedData, settings: Settings) -> Reference:
    # Held-out images, scored out-of-sample as production images will be: the training images
    # would look more confident to the model than anything it sees later.
    # The carved test split measures the check on films of the same period it was not set on.
    tests = (data.carved_test or data.test).paths
    return profile_reference(trained.model, data.val.paths, settings.scope, progress_bar, tests)


@step("recover", IO)
def recover_task(settings: Settings) -> list[str]:
    """MLflow runs a killed process left RUNNING on this host are marked FAILED."""
    return Registry.from_settings(settings).fail_orphaned_runs()


@step("drift-check", IO)
def drift_task(settings: Settings) -> DriftCheck:
    return run_drift_check(open_store(settings), Registry.from_settings(settings), settings)


# No retries: a retried add after its object was written would store the reads twice.
@step("add-labels", COMPUTE)
def labels_task(source: str, settings: Settings) -> LabelsAdded:
    return add_labels_from(Path(source), open_store(settings), settings)


@step("performance-check", IO)
def performance_task(settings: Settings, version: str | None) -> PerformanceCheck:
    return run_performance_check(
        open_store(settings), Registry.from_settings(settings), settings, version
    )


@step("compare-shadow", IO)
def compare_task(settings: Settings, films: Path | None = None) -> ShadowComparison:
    registry = Registry.from_settings(settings)
    return run_shadow_comparison(open_store(settings), registry, settings, films=films)


@dataclass(frozen=True)
class PreparedRun:
    data: PreparedData
    context: RunContext


def prepare_run(
    settings: Settings, timings: dict[str, float], data_path: str | None
) -> PreparedRun:
    """Ingest (optional), validate, prepare the data and the run's report folder."""
    failed = recover_task(settings)
    if failed:
        get_run_logger().warning("marked FAILED %d MLflow runs of killed processes", len(failed))
    if data_path:
        with timed(timings, "ingest"):
            ingest_task(data_path, settings)
    with timed(timings, "validate"):
        validation = validate_task(settings)
    with timed(timings, "prepare"):
        data = prepare_task(settings, validation.manifest_id)
    context = start_run(validation, data, settings)
    # Links each MLflow run and version to the Prefect flow run that made it.
    flow_tags = {FLOW_RUN_TAG: str(flow_run.get_id())}
    return PreparedRun(data, replace(context, extra_tags={**context.extra_tags, **flow_tags}))


def evaluate_gate_register(
    trained: TrainedModel, run: PreparedRun, settings: Settings, phase: dict[str, float]
) -> ModelOutcome:
    """Evaluate, profile, then under the champion lock: re-score the champion, gate, register.

    Everything the version needs exists before it is registered, and `champion` moves last; the
    lock keeps the champion the gate compared against in place until then.
    """
    kind, data, context = trained.kind, run.data, run.context
    with timed(phase, "evaluate"):
        evaluation = evaluate_task(trained, data, settings, context.run_dir / kind)
    trained = adopt_calibrated(trained, evaluation)
    reference = None
    if kind == "resnet":  # the monitored model: its drift reference is registered with it
        with timed(phase, "reference_profile"):
            reference = reference_task(trained, data, settings)
    with champion_guard(settings, f"register {kind}"):
        with timed(phase, "rescore_champion"):
            champion = rescore_task(kind, data, settings)
        decision = gate_task(evaluation, champion, data, settings)
        get_run_logger().info("%s gate: %s", kind, decision.summary())
        with timed(phase, "register"):
            registered = register_task(
                trained, evaluation, decision, data, context, reference, settings, bool(champion)
            )
    before = champion.version if champion else None
    if registered.pending_approval:
        request = approval_request(
            registered,
            evaluation.metrics,
            before,
            champion.metrics if champion else None,
            decision.reasons,
            registered.card_uri,
            shadow_required(settings, registered.model),
        )
        with timed(phase, "approval_wait"):
            answer = wait_for_approval(request, settings.approval_timeout_seconds)
        with champion_guard(settings, f"apply the approval of {kind}"):
            registered = approval_task(registered, answer, before, settings)
    return ModelOutcome(kind, evaluation, decision, registered, trained, before, phase)


def publish_summary(summary: TrainingSummary, key: str, description: str) -> None:
    """The run's results as Prefect artifacts: a narrow table (one row per model, the verdict
    in view), the markdown summary, and a link to the report folder."""
    rows = [
        {
            "model": m.model,
            "version": m.version,
            "gate": "PASS" if m.gate_passed else "FAIL",
            "champion": "moved here" if m.champion else "unchanged",
            "AUC": round(m.metrics["roc_auc"], 3),
            "sensitivity": round(m.metrics["sensitivity"], 3),
            "specificity": round(m.metrics["specificity"], 3),
            "threshold": round(m.threshold, 3),
        }
        for m in summary.models.values()
    ]
    create_table_artifact(key=f"{key}-models", table=rows, description=description)
    markdown = training_markdown(summary)
    create_markdown_artifact(key=key, markdown=markdown, description=description)
    create_link_artifact(
        key=f"{key}-reports",
        link=Path(summary.report_dir).resolve().as_uri(),
        link_text="report folder (plots, predictions, classification reports)",
        description=description,
    )
