"""The training flow against real servers: S3 storage, MLflow with proxied artifacts, Prefect."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio

from pipeline.settings import Settings
from tests import processes
from tests.conftest import FAST_TRAINING, tiny_subset
from tests.integration.conftest import s3_env
from tests.integration.services import BIN, S3Credentials
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_training_flow_on_servers_completes_with_artifacts_in_s3(
    s3: S3Credentials, mlflow_url: tuple[str, str], prefect_api: str, monkeypatch, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.training import training_pipeline

    tracking_url, bucket = mlflow_url
    env = s3_env(monkeypatch, s3, secrets.token_hex(4))
    monkeypatch.setenv("PNEUMO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_url)
    for key, value in FAST_TRAINING.items():
        monkeypatch.setenv(key, value)
    # What is tested is where artifacts land, not ResNet training (the end-to-end tests train
    # it): an untrained ResNet head is registered and evaluated all the same, without the ~50 s
    # of tracing a ResNet50 training step costs.
    monkeypatch.setenv("PNEUMO_TRAIN__RESNET_SCRATCH_EPOCHS", "0")
    monkeypatch.setenv("PNEUMO_GATES__MIN_AUC", "0")
    data = tiny_subset(tmp_path / "chest_xray")

    with temporary_settings({PREFECT_API_URL: prefect_api}):
        state = training_pipeline(data_path=str(data), return_state=True)
        summary = state.result()
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.state.is_completed()
    assert flow_run.name and flow_run.flow_id

    s3_client = Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False)
    for kind in ("cnn", "resnet"):
        run_id = summary.models[kind].run_id
        keys = {
            o.object_name
            for o in s3_client.list_objects(bucket, prefix="artifacts/", recursive=True)
            if run_id in o.object_name
        }
        assert any(k.endswith("model/data/model.keras") for k in keys), keys
        assert any(k.endswith("evaluation/gradcam.png") for k in keys)
    raw = list(s3_client.list_objects(env["PNEUMO_S3_BUCKET_RAW"], prefix="raw/", recursive=True))
    assert len(raw) == 38  # 19 images per class in the tiny subset
    assert not (tmp_path / "home" / "mlartifacts").exists()  # nothing written beside the server


@pytest.fixture
def isolated(prefect_api: str) -> Iterator[Settings]:
    """Settings with a work pool of this test's own; on the way out, everything the test put on
    the shared Prefect server goes: deployments, their automations, unfinished flow runs, pools.

    So one test's schedules or drift trigger can never start runs on another test's worker.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Cancelled

    pool = f"pneumo-test-{secrets.token_hex(4)}"
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        yield Settings(work_pool=pool)
        waiting = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]
        unfinished = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=waiting))
        )
        with get_client(sync_client=True) as client:
            for automation in client.read_automations():
                client.delete_automation(automation.id)
            for deployment in client.read_deployments():
                client.delete_deployment(deployment.id)
            for run in client.read_flow_runs(flow_run_filter=unfinished):
                client.set_flow_run_state(run.id, Cancelled(), force=True)
            for work_pool in client.read_work_pools():
                if work_pool.name.startswith("pneumo-test-"):
                    client.delete_work_pool(work_pool.name)


def test_deployments_are_registered_with_their_schedules(isolated: Settings) -> None:
    from prefect.client.orchestration import get_client

    from flows.deployments import deploy_all
    from flows.guard import CHAMPION_LIMIT

    settings = isolated.model_copy(
        update={
            "training_cron": "0 4 * * 2",
            "drift_cron": "30 5 * * *",
            "retrain_cron": "0 2 * * 6",
            "performance_cron": "15 6 * * *",
            # A PACS configured: its sync is deployed too (the URL is not called here).
            "pacs": isolated.pacs.model_copy(
                update={"url": "http://pacs.invalid/dicom-web", "cron": "*/10 * * * *"}
            ),
        }
    )
    ids = deploy_all(settings)
    with get_client(sync_client=True) as client:
        deployments = {name: client.read_deployment_by_name(name) for name in ids}
        pool = client.read_work_pool(settings.work_pool)
        champion_limit = client.read_global_concurrency_limit_by_name(CHAMPION_LIMIT)
    assert pool.type == "process"
    assert champion_limit.limit == 1
    crons = {name: [s.schedule.cron for s in d.schedules] for name, d in deployments.items()}
    assert crons == {
        "training-pipeline/weekly-training": ["0 4 * * 2"],
        "drift-check/daily-drift-check": ["30 5 * * *"],
        "retrain-champion/retrain-on-drift": ["0 2 * * 6"],
        "performance-check/daily-performance-check": ["15 6 * * *"],
        "batch-predict/archive": [],  # started by hand with the archive to score
        "pacs-sync/new-studies": ["*/10 * * * *"],
    }
    assert all(d.work_pool_name == settings.work_pool for d in deployments.values())
    assert all(d.global_concurrency_limit.limit == 1 for d in deployments.values())
    assert deployments["drift-check/daily-drift-check"].parameters == {"trigger": "event"}
    # On a server a person approves each new champion, unless PNEUMO_APPROVAL says otherwise.
    approval = {d.job_variables["env"]["PNEUMO_APPROVAL"] for d in deployments.values()}
    assert approval == {"required"}
    assert (
        deployments["training-pipeline/weekly-training"].entrypoint
        == "flows/training.py:training_pipeline"
    )


@pytest.mark.parametrize("kind", ["kubernetes", "kubernetes-gpu", "docker"])
def test_deploying_to_an_image_pool_runs_the_flows_from_the_project_image(
    isolated: Settings, kind: str
) -> None:
    """`pneumo deploy --pool NAME --pool-type KIND`: the pool gets infra/workpools' template,
    and the flows are found by module path inside the image, not in this checkout."""
    from prefect.client.orchestration import get_client

    from flows.deployments import deploy_all

    ids = deploy_all(isolated, kind)  # type: ignore[arg-type]
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(isolated.work_pool)
        training = client.read_deployment_by_name("training-pipeline/weekly-training")
    assert pool.type == ("docker" if kind == "docker" else "kubernetes")
    limits = json.dumps(pool.base_job_template["job_configuration"])
    assert ("nvidia.com/gpu" in limits) == (kind == "kubernetes-gpu")
    assert len(ids) == 5 and training.work_pool_name == isolated.work_pool
    assert training.entrypoint == "flows.training.training_pipeline"
    assert not training.pull_steps and training.path in (None, "")
    assert training.job_variables["image"] == isolated.deploy_image
    # The template's own environment is kept beside approval, not replaced by it.
    template_env = pool.base_job_template["variables"]["properties"]["env"]["default"]
    assert training.job_variables["env"] == {**template_env, "PNEUMO_APPROVAL": "required"}


@pytest.mark.parametrize("event", ["drift", "performance drop", "labels added"])
def test_an_event_starts_its_deployment_with_its_parameters(isolated: Settings, event) -> None:
    """Each automation `pneumo deploy` makes: the event starts a run of its deployment, with
    the parameters rendered from the event (the drift report; the labelled films' folder)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    from flows.deployments import deploy_all
    from flows.monitoring import DRIFT_EVENT, LABELS_EVENT, PERFORMANCE_EVENT

    token = secrets.token_hex(4)
    name, resource, payload, expected = {
        "drift": (
            "retrain-champion/retrain-on-drift",
            f"{DRIFT_EVENT}:s3://pneumo-data/reports/drift/{token}.html",
            {},
            {"reason": "drift detected"},
        ),
        "performance drop": (
            "retrain-champion/retrain-on-drift",
            f"{PERFORMANCE_EVENT}:v3",
            {"reason": f"realised specificity dropped {token}", "labeled_path": f"/labels/{token}"},
            {"reason": f"realised specificity dropped {token}", "labeled_path": f"/labels/{token}"},
        ),
        "labels added": (
            "performance-check/daily-performance-check",
            f"{LABELS_EVENT}:labels/date=2026-12-06/{token}.parquet",
            {"added": 3},
            {"trigger": "event"},
        ),
    }[event]
    if event == "drift":
        expected["drift_report"] = resource
    kind = resource.split(":")[0]
    deployment_id = deploy_all(isolated)[name]
    by_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    with get_client(sync_client=True) as client:
        before = {r.id for r in client.read_flow_runs(deployment_filter=by_deployment)}

    def runs_for_event() -> list:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(deployment_filter=by_deployment)
        # Not the cron's scheduled runs, nor runs of another test's events.
        return [
            r for r in runs
            if r.id not in before and not r.auto_scheduled
            and all(r.parameters.get(k) == v for k, v in expected.items())
        ]  # fmt: skip

    # The server starts matching a new automation once its trigger service has loaded it:
    # re-send the event until a run appears, rather than guess how long that takes.
    runs: list = []
    for _ in range(6):
        emit_event(event=kind, resource={"prefect.resource.id": resource}, payload=payload)
        EventsWorker.drain_all(timeout=10, at_exit=False)
        try:
            runs = wait_until(runs_for_event, bool, timeout=15, what=f"a {name} flow run")
            break
        except AssertionError:
            continue
    assert runs, f"no {name} flow run was created for {resource} after 6 events"


def test_deployment_run_completes_on_a_process_worker(
    s3: S3Credentials,
    mlflow_url: tuple[str, str],
    prefect_api: str,
    isolated: Settings,
    monkeypatch,
    tmp_path: Path,
) -> None:
    """`prefect deployment run` (here: run_deployment) -> worker -> a completed flow run."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from flows.deployments import deploy_all
    from pipeline.adapters.backends import open_store
    from pipeline.data.steps import ingest_dataset

    env = {
        **s3_env(monkeypatch, s3, secrets.token_hex(4)),
        **FAST_TRAINING,
        "PNEUMO_HOME": str(tmp_path / "home"),
        "PNEUMO_WORK_POOL": isolated.work_pool,
        "MLFLOW_TRACKING_URI": mlflow_url[0],
        "PNEUMO_TRAIN__RESNET_SCRATCH_EPOCHS": "0",
        "PREFECT_API_URL": prefect_api,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        # What is tested is the worker running the flow, not approval (test_approval.py).
        "PNEUMO_APPROVAL": "auto",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    ingest_dataset(tiny_subset(tmp_path / "chest_xray"), open_store(settings), settings)
    deploy_all(settings)
    log = tmp_path / "worker.log"
    command = [
        str(BIN / "prefect"), "worker", "start", "--pool", settings.work_pool, "--type", "process",
    ]  # fmt: skip
    with processes.running(
        "prefect worker",
        command,
        env={**os.environ},
        cwd=tmp_path,
        log=log,
        grace=processes.PREFECT_WORKER_GRACE,
    ):
        flow_run = run_deployment("training-pipeline/weekly-training", timeout=0)
        with get_client(sync_client=True) as client:
            flow_run = wait_until(
                lambda: client.read_flow_run(flow_run.id),
                lambda run: run.state.is_final(),
                timeout=300,
                interval=2,
                what="the training flow run to finish on the worker",
                describe=lambda run: (
                    f"state {run.state.name}; worker log: "
                    + log.read_text(errors="replace")[-2000:]
                ),
            )
    assert flow_run.state.is_completed(), log.read_text(errors="replace")[-3000:]
