"""Prefect deployments of the pneumo flows: `pneumo deploy` registers them all on a server.

A process work pool runs them (`prefect worker start --pool pneumo-process`); the worker's
environment (PNEUMO_*, MLFLOW_TRACKING_URI) is what the flow runs see.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.events import DeploymentEventTrigger
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

from flows.guard import ensure_champion_limit
from flows.monitoring import DRIFT_EVENT, drift_check, retrain_champion
from flows.training import training_pipeline
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[1]
TRAINING = "weekly-training"
DRIFT = "daily-drift-check"
RETRAIN = "retrain-on-drift"


def ensure_work_pool(name: str) -> None:
    """Create the process work pool if the server does not have it yet."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(
                WorkPoolCreate(name=name, type="process", base_job_template=template)
            )


def approval_of(settings: Settings) -> str:
    """PNEUMO_APPROVAL if set, else `required`: the embedded default `auto` is for the demo."""
    return settings.approval if "approval" in settings.model_fields_set else "required"


def _deploy(flow, entrypoint: str, name: str, settings: Settings, **options) -> UUID:
    source = flow.from_source(source=str(REPO), entrypoint=entrypoint)
    return source.deploy(
        name=name,
        work_pool_name=settings.work_pool,
        build=False,
        push=False,
        tags=["pneumo"],
        # One run of each at a time; across deployments the champion lock serialises the moves.
        concurrency_limit=1,
        print_next_steps=False,
        # A server deployment asks a person before moving champion unless told otherwise.
        job_variables={"env": {"PNEUMO_APPROVAL": approval_of(settings)}},
        **options,
    )


def deploy_all(settings: Settings) -> dict[str, UUID]:
    """Register (or update) every deployment with its schedule; returns their ids by name."""
    ensure_work_pool(settings.work_pool)
    ensure_champion_limit()  # created on first use anyway; here it shows in the UI from the start
    ids = {
        f"training-pipeline/{TRAINING}": _deploy(
            training_pipeline,
            "flows/training.py:training_pipeline",
            TRAINING,
            settings,
            cron=settings.training_cron,
            parameters={"data_path": None},
            description="Retrain both models on the latest ingested manifest; gate and register.",
        ),
        f"drift-check/{DRIFT}": _deploy(
            drift_check,
            "flows/monitoring.py:drift_check",
            DRIFT,
            settings,
            cron=settings.drift_cron,
            parameters={"trigger": "event"},
            description=f"Evidently drift check of the champion; emits {DRIFT_EVENT} on drift.",
        ),
        # Weekly, and whenever the drift event arrives (the report URI rides in the resource id).
        f"retrain-champion/{RETRAIN}": _deploy(
            retrain_champion,
            "flows/monitoring.py:retrain_champion",
            RETRAIN,
            settings,
            cron=settings.retrain_cron,
            parameters={"reason": "scheduled"},
            triggers=[
                DeploymentEventTrigger(
                    name="retrain on drift",
                    expect={DRIFT_EVENT},
                    match={"prefect.resource.id": f"{DRIFT_EVENT}:*"},
                    parameters={
                        "reason": "drift detected",
                        "drift_report": "{{ event.resource.id }}",
                    },
                )
            ],
            description="Fine-tune the champion, gate it against the champion, register.",
        ),
    }
    return ids
