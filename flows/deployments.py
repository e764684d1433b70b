"""Prefect deployments of the pneumo flows: `pneumo deploy` registers them all on a server.

They go to one work pool, of any type: a process pool (`prefect worker start --pool
pneumo-process`, flows run from this checkout, the worker's environment is theirs), or a Docker
or Kubernetes pool, whose flow runs start from the project image (`deploy_image`) with the base
job template in infra/workpools/ (service addresses, secrets, resources; a GPU variant).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import WorkPool
from prefect.deployments.runner import EntrypointType
from prefect.events import DeploymentEventTrigger
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

from flows.batch_predict import batch_predict
from flows.guard import ensure_champion_limit
from flows.monitoring import (
    DRIFT_EVENT,
    LABELS_EVENT,
    PERFORMANCE_EVENT,
    drift_check,
    performance_check,
    retrain_champion,
)
from flows.pacs import PACS_SYNC, pacs_sync
from flows.training import training_pipeline
from pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "infra" / "workpools"
TRAINING = "weekly-training"
DRIFT = "daily-drift-check"
RETRAIN = "retrain-on-drift"
PERFORMANCE = "daily-performance-check"
BATCH = "archive"
PACS = "new-studies"
PoolKind = Literal["process", "docker", "kubernetes", "kubernetes-gpu"]
# pool kind -> (worker type, base job template in infra/workpools/; None: the worker's default)
POOL_KINDS: dict[str, tuple[str, str | None]] = {
    "process": ("process", None),
    "docker": ("docker", "docker.json"),
    "kubernetes": ("kubernetes", "kubernetes.json"),
    "kubernetes-gpu": ("kubernetes", "kubernetes-gpu.json"),
}


def base_job_template(kind: PoolKind) -> tuple[str, dict]:
    """(worker type, base job template) of a pool kind."""
    worker_type, file = POOL_KINDS[kind]
    if file is None:
        return worker_type, ProcessWorker.get_default_base_job_template()
    path = TEMPLATES / file
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run `pneumo deploy` from a pneumo-ops checkout, or create the "
            f"pool first (`prefect work-pool create NAME --type {worker_type} "
            f"--base-job-template infra/workpools/{file}`)"
        )
    return worker_type, json.loads(path.read_text())


def ensure_work_pool(name: str, kind: PoolKind = "process") -> WorkPool:
    """The pool `name`; created as `kind` if the server does not have it yet (an existing pool
    is used as it is, whatever its type)."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_work_pool(name)
        except ObjectNotFound:
            worker_type, template = base_job_template(kind)
            create = WorkPoolCreate(name=name, type=worker_type, base_job_template=template)
            return client.create_work_pool(create)


def approval_of(settings: Settings) -> str:
    """PNEUMO_APPROVAL if set, else `required`: the embedded default `auto` is for the demo."""
    return settings.approval if "approval" in settings.model_fields_set else "required"


def _deploy(flow, entrypoint: str, name: str, settings: Settings, pool: WorkPool, **options):
    """One deployment on `pool`: from this checkout on a process pool, from the project image
    (the flow found by module path inside it) on a pool whose template takes an image."""
    variables = pool.base_job_template.get("variables", {}).get("properties", {})
    env = {
        **(variables.get("env", {}).get("default") or {}),  # a template's own service addresses
        # A server deployment asks a person before moving champion unless told otherwise.
        "PNEUMO_APPROVAL": approval_of(settings),
    }
    common = {
        "name": name,
        "work_pool_name": pool.name,
        "build": False,
        "push": False,
        "tags": ["pneumo"],
        # One run of each at a time; across deployments the champion lock serialises the moves.
        "concurrency_limit": 1,
        "print_next_steps": False,
        "job_variables": {"env": env},
        **options,
    }
    if "image" in variables:
        return flow.deploy(
            image=settings.deploy_image, entrypoint_type=EntrypointType.MODULE_PATH, **common
        )
    return flow.from_source(source=str(REPO), entrypoint=entrypoint).deploy(**common)


def deploy_all(settings: Settings, kind: PoolKind = "process") -> dict[str, UUID]:
    """Register (or update) every deployment with its schedule on `settings.work_pool` (made
    as `kind` if new); returns their ids by name."""
    pool = ensure_work_pool(settings.work_pool, kind)
    ensure_champion_limit()  # created on first use anyway; here it shows in the UI from the start
    ids = {
        f"training-pipeline/{TRAINING}": _deploy(
            training_pipeline,
            "flows/training.py:training_pipeline",
            TRAINING,
            settings,
            pool,
            cron=settings.training_cron,
            parameters={"data_path": None},
            description="Retrain both models on the latest ingested manifest; gate and register.",
        ),
        f"drift-check/{DRIFT}": _deploy(
            drift_check,
            "flows/monitoring.py:drift_check",
            DRIFT,
            settings,
            pool,
            cron=settings.drift_cron,
            parameters={"trigger": "event"},
            description=f"Evidently drift check of the champion; emits {DRIFT_EVENT} on drift.",
        ),
        # Daily, and whenever labels arrive.
        f"performance-check/{PERFORMANCE}": _deploy(
            performance_check,
            "flows/monitoring.py:performance_check",
            PERFORMANCE,
            settings,
            pool,
            cron=settings.performance_cron,
            parameters={"trigger": "event"},
            triggers=[
                DeploymentEventTrigger(
                    name="check when labels arrive",
                    expect={LABELS_EVENT},
                    match={"prefect.resource.id": f"{LABELS_EVENT}:*"},
                    parameters={"trigger": "event"},
                )
            ],
            description=f"Realised performance on labelled predictions; emits "
            f"{PERFORMANCE_EVENT} when the champion's dropped.",
        ),
        # Weekly, whenever the drift event arrives (the report URI rides in the resource id),
        # and on a performance drop, with the labelled films' folder.
        f"retrain-champion/{RETRAIN}": _deploy(
            retrain_champion,
            "flows/monitoring.py:retrain_champion",
            RETRAIN,
            settings,
            pool,
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
                ),
                DeploymentEventTrigger(
                    name="retrain on a performance drop",
                    expect={PERFORMANCE_EVENT},
                    match={"prefect.resource.id": f"{PERFORMANCE_EVENT}:*"},
                    parameters={
                        "reason": "{{ event.payload.reason }}",
                        "labeled_path": "{{ event.payload.labeled_path }}",
                    },
                ),
            ],
            description="Fine-tune the champion, gate it against the champion, register.",
        ),
        # No schedule: started with the archive to score, from the UI or `prefect deployment run`.
        f"batch-predict/{BATCH}": _deploy(
            batch_predict,
            "flows/batch_predict.py:batch_predict",
            BATCH,
            settings,
            pool,
            description="Score a folder, store prefix or manifest in shards on Dask; resumable.",
        ),
    }
    if settings.pacs.url:  # without a PACS, a scheduled sync could only fail
        ids[f"{PACS_SYNC}/{PACS}"] = _deploy(
            pacs_sync,
            "flows/pacs.py:pacs_sync",
            PACS,
            settings,
            pool,
            cron=settings.pacs.cron,
            parameters={"overlay": False},
            description="Score the PACS's new chest films; store an SR per film into its study.",
        )
    return ids
