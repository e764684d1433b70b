"""Prefect deployments of the pneumo flows: `pneumo deploy` registers them all on a server.

A process work pool runs them (`prefect worker start --pool pneumo-process`); the worker's
environment (PNEUMO_*, MLFLOW_TRACKING_URI) is what the flow runs see.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

from flows.training import training_pipeline
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[1]
TRAINING = "weekly-training"


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


def deploy_all(settings: Settings) -> dict[str, UUID]:
    """Register (or update) every deployment; returns their ids by name."""
    ensure_work_pool(settings.work_pool)
    source = training_pipeline.from_source(
        source=str(REPO), entrypoint="flows/training.py:training_pipeline"
    )
    training_id = source.deploy(
        name=TRAINING,
        work_pool_name=settings.work_pool,
        cron=settings.training_cron,
        build=False,
        push=False,
        parameters={"data_path": None},
        description="Retrain both models on the latest ingested manifest; gate and register.",
        tags=["pneumo", "training"],
        print_next_steps=False,
    )
    return {f"training-pipeline/{TRAINING}": training_id}
