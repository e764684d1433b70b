"""The `training-pipeline` Prefect flow: wires pipeline steps into tasks, holds no logic.

ingest -> validate -> prepare -> for each model: train -> evaluate -> re-score champion -> gate
-> register (and move `champion` if the gate passed) -> markdown summary artifact.
"""

from __future__ import annotations

from prefect import flow

from flows.runtime import flow_settings
from flows.tasks import evaluate_gate_register, prepare_run, publish_summary, timed, train_task
from pipeline.train.candidate import summarise


@flow(name="training-pipeline", log_prints=True)
def training_pipeline(
    data_path: str | None = None, models: tuple[str, ...] = ("cnn", "resnet")
) -> dict:
    """Ingest (if `data_path`), validate, train and gate each model, register in MLflow."""
    settings = flow_settings()
    timings: dict[str, float] = {}
    run = prepare_run(settings, timings, data_path)
    outcomes = []
    for kind in models:
        phase: dict[str, float] = {}
        with timed(phase, "train"):
            trained = train_task(kind, run.data, settings)
        outcomes.append(evaluate_gate_register(trained, run, settings, phase))
    summary = summarise(outcomes, run.context.provenance, timings, settings, run.context.run_dir)
    publish_summary(summary, "training-summary", "training-pipeline")
    return summary
