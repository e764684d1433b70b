"""Session-wide real servers: started once, on free loopback ports, stopped by PID at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import summary
from tests.integration.services import (
    S3Credentials,
    Service,
    mlflow_server,
    prefect_server,
    seaweed,
)


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> Iterator[S3Credentials]:
    service, creds = seaweed(tmp_path_factory.mktemp("seaweed"))
    yield from _running(service, creds)


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory, s3: S3Credentials) -> Iterator[tuple[str, str]]:
    """(tracking URL, artifact bucket) of an MLflow server proxying artifacts to S3."""
    from minio import Minio

    bucket = "pneumo-mlflow-it"
    client = Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    service = mlflow_server(tmp_path_factory.mktemp("mlflow"), s3, bucket)
    url = service.health_url.removesuffix("/health")
    yield from _running(service, (url, bucket))


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> Iterator[str]:
    service = prefect_server(tmp_path_factory.mktemp("prefect"))
    api = service.health_url.removesuffix("/health")
    for value in _running(service, api):
        yield value
        # Send buffered logs and events while the server is up; at exit they would retry for
        # a minute against a stopped server.
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: api}):
            APILogWorker.drain_all(timeout=10, at_exit=False)
            EventsWorker.drain_all(timeout=10, at_exit=False)


def _running(service: Service, value):
    service.start()
    summary.record("server startup times", service.name, service.startup_seconds)
    try:
        yield value
    finally:
        service.stop()


def s3_env(monkeypatch: pytest.MonkeyPatch, creds: S3Credentials, suffix: str) -> dict[str, str]:
    """Environment selecting the S3 backend, with buckets of their own for one test."""
    env = {
        "PNEUMO_STORAGE": "s3",
        "PNEUMO_S3_ENDPOINT": creds.endpoint,
        "PNEUMO_S3_ACCESS_KEY": creds.access_key,
        "PNEUMO_S3_SECRET_KEY": creds.secret_key,
        "PNEUMO_S3_BUCKET_RAW": f"raw-{suffix}",
        "PNEUMO_S3_BUCKET_DATA": f"data-{suffix}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
