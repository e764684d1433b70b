"""Monitoring flows: `drift-check`, `add-labels`, `performance-check` and `retrain-champion`
(wiring only; steps live in pipeline).

drift-check compares the champion's reference profile with its recent predictions. On drift it
starts retrain-champion: directly in the embedded default (`trigger="direct"`), or by emitting
the `pneumo.drift.detected` event that the retrain deployment's trigger listens for on a server.
performance-check joins the labels that arrived with the logged predictions; when the
champion's realised performance dropped it starts retrain-champion on the labelled films the
same two ways (`pneumo.performance.dropped`). add-labels emits `pneumo.labels.added`, which the
performance deployment's trigger listens for.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from flows.output import (
    comparison_markdown,
    drift_markdown,
    performance_lines,
    performance_markdown,
    signal_lines,
)
from flows.runtime import flow_settings
from flows.tasks import (
    PreparedRun,
    compare_task,
    drift_task,
    evaluate_gate_register,
    labeled_task,
    labels_task,
    new_labels_task,
    performance_task,
    prepare_run,
    publish_summary,
    timed,
    warm_start_task,
)
from pipeline.monitor.compare import ShadowComparison
from pipeline.monitor.labels import LabelsAdded
from pipeline.monitor.steps import DriftOutcome, PerformanceOutcome, Retraining
from pipeline.predict.inference_log import DRIFT
from pipeline.settings import Settings
from pipeline.train.candidate import TrainingSummary, summarise

DRIFT_EVENT = "pneumo.drift.detected"
LABELS_EVENT = "pneumo.labels.added"
PERFORMANCE_EVENT = "pneumo.performance.dropped"


@flow(name="retrain-champion", log_prints=True)
def retrain_champion(
    reason: str = "scheduled",
    drift_report: str = "",
    labeled_path: str | None = None,
    labeled_inbox: str | None = None,
) -> TrainingSummary:
    """Fine-tune the champion on train (+ new labels), gate it against the champion, register.
    `labeled_inbox` overrides PNEUMO_DRIFT__LABELED_INBOX."""
    settings = with_inbox(flow_settings(), labeled_inbox)
    timings: dict[str, float] = {}
    # The inbox's new labels join every retrain, whatever started it (schedule, drift event);
    # an inbox with nothing new (empty, or all added before) is left alone.
    paths = [labeled_path] if labeled_path else []
    inbox = settings.drift.labeled_inbox
    if inbox and str(inbox) != labeled_path and new_labels_task(settings) > 0:
        paths.append(str(inbox))
    for path in paths:
        with timed(timings, "add_labeled"):
            labeled = labeled_task(path, settings)
        get_run_logger().info(
            "added %d labelled images from %s (%d left out)",
            labeled.added,
            path,
            len(labeled.left_out),
        )
    run = prepare_run(settings, timings, None)
    phase: dict[str, float] = {}
    with timed(phase, "train"):
        trained, version = warm_start_task(run.data, settings)
    context = dataclasses.replace(
        run.context,
        extra_tags={
            **run.context.extra_tags,
            "retrain_reason": reason,
            "drift_report_uri": drift_report.removeprefix(f"{DRIFT_EVENT}:") or "none",
            "warm_start_from": version,
        },
    )
    outcome = evaluate_gate_register(trained, PreparedRun(run.data, context), settings, phase)
    summary = summarise([outcome], context.provenance, timings, settings, context.run_dir)
    publish_summary(summary, "retrain-summary", "retrain-champion")
    return summary


@flow(name="drift-check", log_prints=True)
def drift_check(
    trigger: Literal["direct", "event", "none"] = "direct",
    last_n: int | None = None,
    days: int | None = None,
    labeled_inbox: str | None = None,
) -> DriftOutcome:
    """Check drift; on drift retrain directly (`direct`), emit the drift event (`event`, for a
    server's automation) or only report (`none`). `last_n`/`days` override the window,
    `labeled_inbox` PNEUMO_DRIFT__LABELED_INBOX."""
    settings = with_inbox(flow_settings(), labeled_inbox)
    window = {k: v for k, v in (("last_n", last_n), ("days", days)) if v is not None}
    settings = settings.model_copy(update={"drift": settings.drift.model_copy(update=window)})
    check = drift_task(settings)
    create_markdown_artifact(
        key="drift-summary", markdown=drift_markdown(check), description="drift-check"
    )
    for line in signal_lines(check.summary):
        if line.startswith("ALERT"):  # alerts only: on a server, an automation can page on them
            get_run_logger().warning(line)
    if check.result.status != DRIFT or trigger == "none":
        return DriftOutcome(check)
    reason = f"drift in {', '.join(check.result.drifted_columns)}"
    new_labels = new_labels_task(settings)
    if new_labels == 0:
        # Retraining on the old films cannot teach the model the new ones: alert and wait.
        where = settings.drift.labeled_inbox or "PNEUMO_DRIFT__LABELED_INBOX (not set)"
        retraining = Retraining(f"waiting for labelled images of the shifted films in {where}")
        get_run_logger().warning("ALERT image shift: %s", retraining.note)
    elif trigger == "event":
        emit_event(
            event=DRIFT_EVENT,
            resource={"prefect.resource.id": f"{DRIFT_EVENT}:{check.report_uri}"},
            payload={
                "reason": reason,
                **{k: str(v) for k, v in check.summary.items()},
                "new_labels": str(new_labels),
            },
        )
        retraining = Retraining("event emitted")
    else:
        run = retrain_champion(
            reason=reason, drift_report=check.report_uri or "", labeled_inbox=labeled_inbox
        )
        retraining = Retraining(run=run)
    return DriftOutcome(check, new_labels, retraining)


@flow(name="add-labels", log_prints=True)
def add_labels(source: str, trigger: Literal["event", "none"] = "event") -> LabelsAdded:
    """Store radiologists' reads (a CSV or a labels folder) append-only; `event`: announce them,
    so that a server's performance deployment checks the champion against them."""
    added = labels_task(source, flow_settings())
    if trigger == "event" and added.key:
        emit_event(
            event=LABELS_EVENT,
            resource={"prefect.resource.id": f"{LABELS_EVENT}:{added.key}"},
            payload={"added": added.added, "matched": added.matched, "source": source},
        )
    return added


def with_inbox(settings: Settings, inbox: str | None) -> Settings:
    """The settings with the labelled inbox set to `inbox` (None: as configured)."""
    if inbox is None:
        return settings
    drift = settings.drift.model_copy(update={"labeled_inbox": Path(inbox)})
    return settings.model_copy(update={"drift": drift})


def windowed(settings: Settings, days: int | None) -> Settings:
    """The settings with the labelled-traffic window set to `days` (None: as configured)."""
    if days is None:
        return settings
    window = settings.performance.model_copy(update={"days": days})
    return settings.model_copy(update={"performance": window})


@flow(name="performance-check", log_prints=True)
def performance_check(
    trigger: Literal["direct", "event", "none"] = "direct",
    days: int | None = None,
    version: str | None = None,
) -> PerformanceOutcome:
    """Realised performance of each version on its labelled predictions; when the champion's
    dropped, retrain it on the labelled films (`direct`), emit the drop event (`event`, for a
    server's automation) or only report (`none`). `days` overrides the window."""
    settings = windowed(flow_settings(), days)
    check = performance_task(settings, version)
    create_markdown_artifact(
        key="performance-summary",
        markdown=performance_markdown(check),
        description="performance-check",
    )
    for line in performance_lines(check):
        if line.startswith("ALERT"):
            get_run_logger().warning(line)
    dropped = check.champion_dropped
    if dropped is None or trigger == "none":
        return PerformanceOutcome(check)
    reason = f"realised {', '.join(dropped.dropped)} dropped (v{dropped.version})"
    if not check.labeled_folders:
        retraining = Retraining(
            "waiting for labelled films: these labels came as CSV rows, which name images "
            "but do not hold them (add the films with `pneumo labels add DIR`)"
        )
        get_run_logger().warning("ALERT performance: %s", retraining.note)
    elif trigger == "event":
        emit_event(
            event=PERFORMANCE_EVENT,
            resource={"prefect.resource.id": f"{PERFORMANCE_EVENT}:v{dropped.version}"},
            payload={"reason": reason, "labeled_path": check.labeled_folders[-1]},
        )
        retraining = Retraining("event emitted")
    else:
        run = retrain_champion(reason=reason, labeled_path=check.labeled_folders[-1])
        retraining = Retraining(run=run)
    return PerformanceOutcome(check, retraining)


@flow(name="compare-shadow", log_prints=True)
def compare_shadow(days: int | None = None, films: str | None = None) -> ShadowComparison:
    """Champion against challenger on the shadow traffic (`pneumo serve --shadow`): agreement,
    and with labels the paired comparison and a recommendation; stored for `pneumo promote`.
    `films`: a folder of the traffic's films, for the disagreements' Grad-CAMs."""
    folder = Path(films) if films else None
    comparison = compare_task(windowed(flow_settings(), days), folder)
    create_markdown_artifact(
        key="shadow-comparison",
        markdown=comparison_markdown(comparison),
        description="compare-shadow",
    )
    return comparison
