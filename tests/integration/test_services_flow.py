"""The training flow against real servers: S3 storage, MLflow with proxied artifacts, Prefect."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
from minio import Minio

from tests.conftest import FAST_TRAINING, tiny_subset
from tests.integration.conftest import s3_env
from tests.integration.services import BIN, S3Credentials

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
    for key, value in {
        **FAST_TRAINING,
        "PNEUMO_TRAIN__CNN_EPOCHS": "1",
        "PNEUMO_TRAIN__RESNET_HEAD_EPOCHS": "1",
    }.items():
        monkeypatch.setenv(key, value)
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
        run_id = summary["models"][kind]["run_id"]
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


def test_deployments_are_registered_with_their_schedules(prefect_api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployments import deploy_all
    from pipeline.settings import Settings

    settings = Settings(
        training_cron="0 4 * * 2", drift_cron="30 5 * * *", retrain_cron="0 2 * * 6"
    )
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        ids = deploy_all(settings)
        with get_client(sync_client=True) as client:
            deployments = {name: client.read_deployment_by_name(name) for name in ids}
            pool = client.read_work_pool("pneumo-process")
    assert pool.type == "process"
    crons = {name: [s.schedule.cron for s in d.schedules] for name, d in deployments.items()}
    assert crons == {
        "training-pipeline/weekly-training": ["0 4 * * 2"],
        "drift-check/daily-drift-check": ["30 5 * * *"],
        "retrain-champion/retrain-on-drift": ["0 2 * * 6"],
    }
    assert all(d.work_pool_name == "pneumo-process" for d in deployments.values())
    assert deployments["drift-check/daily-drift-check"].parameters == {"trigger": "event"}
    assert (
        deployments["training-pipeline/weekly-training"].entrypoint
        == "flows/training.py:training_pipeline"
    )


def test_drift_event_starts_a_retrain_flow_run(prefect_api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployments import deploy_all
    from flows.monitoring import DRIFT_EVENT
    from pipeline.settings import Settings

    resource = f"{DRIFT_EVENT}:s3://pneumo-data/reports/drift/{secrets.token_hex(4)}.html"
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        retrain_id = deploy_all(Settings())["retrain-champion/retrain-on-drift"]
        time.sleep(2)  # the server loads the new automation
        emit_event(event=DRIFT_EVENT, resource={"prefect.resource.id": resource})
        EventsWorker.drain_all(timeout=10, at_exit=False)
        deadline = time.time() + 90
        runs = []
        with get_client(sync_client=True) as client:
            while time.time() < deadline:
                runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[retrain_id]))
                )
                runs = [r for r in runs if r.parameters.get("drift_report") == resource]
                if runs:
                    break
                time.sleep(1)
    assert runs, "no retrain-champion flow run was created for the drift event"
    assert runs[0].parameters["reason"] == "drift detected"


def test_deployment_run_completes_on_a_process_worker(
    s3: S3Credentials, mlflow_url: tuple[str, str], prefect_api: str, monkeypatch, tmp_path: Path
) -> None:
    """`prefect deployment run` (here: run_deployment) -> worker -> a completed flow run."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployments import deploy_all
    from pipeline.dataset import ingest_dataset
    from pipeline.settings import Settings
    from pipeline.storage import open_store

    env = {
        **s3_env(monkeypatch, s3, secrets.token_hex(4)),
        **FAST_TRAINING,
        "PNEUMO_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": mlflow_url[0],
        "PNEUMO_TRAIN__CNN_EPOCHS": "1",
        "PNEUMO_TRAIN__RESNET_HEAD_EPOCHS": "0",
        "PREFECT_API_URL": prefect_api,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    ingest_dataset(tiny_subset(tmp_path / "chest_xray"), open_store(settings), settings)
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        deploy_all(settings)
        worker = subprocess.Popen(
            [
                str(BIN / "prefect"),
                "worker",
                "start",
                "--pool",
                settings.work_pool,
                "--type",
                "process",
            ],
            env={**os.environ, **env},
            stdout=(tmp_path / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            flow_run = run_deployment("training-pipeline/weekly-training", timeout=0)
            deadline = time.time() + 300
            with get_client(sync_client=True) as client:
                while time.time() < deadline:
                    flow_run = client.read_flow_run(flow_run.id)
                    if flow_run.state.is_final():
                        break
                    time.sleep(2)
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
    assert flow_run.state.is_completed(), (tmp_path / "worker.log").read_text()[-3000:]
