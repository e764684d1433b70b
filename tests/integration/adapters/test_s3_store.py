"""The S3 backend against a real S3 server (SeaweedFS), with real credential checks."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from minio import Minio

from pipeline.adapters.backends import open_store
from pipeline.adapters.s3 import S3Store, StorageAuthError, StorageUnavailableError
from pipeline.adapters.storage import StorageError
from pipeline.data.steps import ingest_dataset
from pipeline.settings import Settings
from tests import processes
from tests.conftest import REPO, SAMPLE, make_dataset
from tests.integration.conftest import s3_env
from tests.integration.services import S3Credentials, seaweed
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_ingest_to_s3_reads_back_byte_identical(
    s3: S3Credentials, monkeypatch, tmp_path: Path
) -> None:
    s3_env(monkeypatch, s3, secrets.token_hex(4))
    settings = Settings(home=tmp_path)
    store = open_store(settings)
    summary = ingest_dataset(SAMPLE, store, settings)
    assert (summary.stored, summary.already_stored) == (826, 0)
    assert store.exists(f"manifests/{summary.manifest_id}.parquet")
    originals = {p.name: p.read_bytes() for p in SAMPLE.rglob("*.jpeg")}
    raw = store.list("raw/")
    assert len(raw) == 826
    for key in raw[:40]:
        assert digest(store.get(key)) in {digest(b) for b in originals.values()}
    assert store.uri(raw[0]).startswith(f"s3://{settings.s3_bucket_raw}/raw/")
    again = ingest_dataset(SAMPLE, store, settings)
    assert (again.stored, again.already_stored, again.manifest_is_new) == (0, 826, False)


def test_wrong_credentials_fail_at_once_with_a_clear_message(s3: S3Credentials) -> None:
    store = S3Store(
        s3.endpoint,
        s3.access_key,
        "not-the-secret",
        {"default": "pneumo-auth"},
        attempts=4,
        backoff_seconds=5,
    )
    started = time.perf_counter()
    with pytest.raises(StorageAuthError, match=r"SignatureDoesNotMatch.*PNEUMO_S3_SECRET_KEY"):
        store.ensure_buckets()
    assert time.perf_counter() - started < 5  # no retries for a credential error


@pytest.mark.parametrize(
    ("bucket", "says"),
    [("ab", "cannot be created: invalid bucket name"), ("Bad_Bucket", "InvalidBucketName")],
)
def test_bucket_that_cannot_be_created_fails_at_once(
    s3: S3Credentials, bucket: str, says: str
) -> None:
    store = S3Store(
        s3.endpoint, s3.access_key, s3.secret_key, {"default": bucket}, backoff_seconds=5
    )
    started = time.perf_counter()
    with pytest.raises(StorageError, match=rf"{bucket}.*{s3.endpoint}.*{says}"):
        store.ensure_buckets()
    assert time.perf_counter() - started < 5


def test_interrupted_ingest_resumes_and_stores_nothing_twice(
    s3: S3Credentials, monkeypatch, tmp_path: Path
) -> None:
    data = make_dataset(tmp_path / "data", {"train": {f"IM-{i:04d}": 3 for i in range(200)}})
    env = s3_env(monkeypatch, s3, secrets.token_hex(4))
    settings = Settings(home=tmp_path / "home")
    client = Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False)

    def stored() -> int:
        if not client.bucket_exists(settings.s3_bucket_raw):
            return 0
        return sum(1 for _ in client.list_objects(settings.s3_bucket_raw, recursive=True))

    command = [sys.executable, "-m", "flows.cli", "ingest", str(data)]
    child_env = {
        **os.environ,
        **env,
        "PNEUMO_HOME": str(settings.home),
        "PNEUMO_INGEST__WORKERS": "1",
    }
    with processes.running(
        "pneumo ingest", command, env=child_env, cwd=REPO, log=tmp_path / "ingest.log"
    ) as child:
        wait_until(
            stored,
            lambda count: count >= 60 or child.poll() is not None,
            timeout=60,
            interval=0.05,
            what="the ingest to store 60 objects",
        )
        child.send_signal(signal.SIGKILL)
        child.wait()
    stored_before = sum(1 for _ in client.list_objects(settings.s3_bucket_raw, recursive=True))
    assert 0 < stored_before < 600, "the ingest was not interrupted half way"
    summary = ingest_dataset(data, open_store(settings), settings)
    assert summary.already_stored == stored_before
    assert summary.stored == 600 - stored_before
    assert sum(1 for _ in client.list_objects(settings.s3_bucket_raw, recursive=True)) == 600


def stop_test_store(creds: S3Credentials, **retry: int | float) -> S3Store:
    return S3Store(
        creds.endpoint, creds.access_key, creds.secret_key, {"default": "stop-test"}, **retry
    )


def raw_keys(store: S3Store) -> set[str]:
    objects = store.client.list_objects("stop-test", prefix="raw/", recursive=True)
    return {o.object_name for o in objects}


def test_server_stopped_mid_ingest_retries_then_fails_clearly_and_keeps_objects(
    tmp_path: Path,
) -> None:
    service, creds = seaweed(tmp_path / "seaweed")
    service.start()
    try:
        data = make_dataset(tmp_path / "data", {"train": {f"IM-{i:04d}": 3 for i in range(200)}})
        store = stop_test_store(creds, attempts=3, backoff_seconds=0.2, timeout_seconds=2)
        store.ensure_buckets()
        settings = Settings(home=tmp_path / "home", ingest={"workers": 1})
        failure: list[BaseException] = []

        def run() -> None:
            try:
                ingest_dataset(data, store, settings)
            except BaseException as exc:  # handed to the test thread
                failure.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        wait_until(
            lambda: len(raw_keys(store)),
            lambda count: count >= 50 or not worker.is_alive(),
            timeout=60,
            interval=0.05,
            what="the ingest to store 50 objects",
        )
        kept = raw_keys(store)
        service.stop()
        worker.join(timeout=60)
        assert not worker.is_alive()
        assert failure and isinstance(failure[0], StorageUnavailableError)
        message = str(failure[0])
        assert (
            creds.endpoint in message
            and "s3://stop-test/raw/" in message
            and "after 3 attempts" in message
        )
        service.start()
        # After a restart the volume server re-registers for a few seconds (5xx meanwhile):
        # read back with patient retries; the objects themselves must all be there.
        reader = stop_test_store(creds, attempts=10, backoff_seconds=0.5)
        for key in sorted(kept)[:50]:
            assert digest(reader.get(key)) == Path(key).stem
    finally:
        service.stop()
