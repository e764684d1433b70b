"""Secrets never leave: the pipeline against protected servers (MLflow basic-auth, Prefect with an
auth string, S3 with its keys), then every output of those runs searched for every secret.

The runs are real `pneumo` processes: ingest and train (succeeding), the service with an API
key, and three failures (a bad setting, a wrong MLflow password, an unreachable MLflow). What
is searched: their terminal output, everything under PNEUMO_HOME (logs, reports, spool), the
MLflow and Prefect servers' databases and logs (params, tags, flow-run logs), and every object
the runs wrote to S3.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from minio import Minio

from tests import processes
from tests.conftest import FAST_TRAINING, OPEN_GATES, REPO, SAMPLE, tiny_subset
from tests.integration.services import (
    BasicAuth,
    S3Credentials,
    Service,
    free_port,
    mlflow_server,
    prefect_server,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Protected:
    """The protected servers of this module, and everything its runs printed or wrote."""

    mlflow: Service
    prefect: Service
    auth: BasicAuth
    prefect_auth: str
    s3: S3Credentials
    buckets: list[str]
    home: Path
    outputs: dict[str, str] = field(default_factory=dict)  # run name -> terminal output
    secrets: dict[str, str] = field(default_factory=dict)  # what it is -> value

    @property
    def tracking_host(self) -> str:
        return self.mlflow.health_url.removesuffix("/health").removeprefix("http://")


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10):
            return 200
    except urllib.error.HTTPError as exc:
        return exc.code


def json_of(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


def env_for(world: Protected, password: str | None = None, host: str | None = None) -> dict:
    """A `pneumo` process's environment: S3 storage, MLflow with the password in its URI (as
    people write it), Prefect with its auth string."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PNEUMO_", "MLFLOW_", "PREFECT_", "AWS_"))
    }
    return (
        base
        | FAST_TRAINING
        | OPEN_GATES
        | {
            "PNEUMO_HOME": str(world.home),
            "PYTHONPATH": str(REPO),
            "PNEUMO_TRAIN__RESNET_SCRATCH_EPOCHS": "0",
            "PNEUMO_STORAGE": "s3",
            "PNEUMO_S3_ENDPOINT": world.s3.endpoint,
            "PNEUMO_S3_ACCESS_KEY": world.s3.access_key,
            "PNEUMO_S3_SECRET_KEY": world.s3.secret_key,
            "PNEUMO_S3_BUCKET_RAW": world.buckets[0],
            "PNEUMO_S3_BUCKET_DATA": world.buckets[1],
            "MLFLOW_TRACKING_URI": (
                f"http://{world.auth.username}:{password or world.auth.password}@"
                f"{host or world.tracking_host}"
            ),
            "PREFECT_API_URL": world.prefect.health_url.removesuffix("/health"),
            "PREFECT_API_AUTH_STRING": world.prefect_auth,
            "PREFECT_HOME": str(world.home / "prefect"),
        }
    )


def pneumo(world: Protected, name: str, args: list[str], env: dict) -> int:
    log = world.home.parent / f"{name}.log"
    code, out = processes.run_pneumo(args, env=env, cwd=world.home.parent, log=log)
    world.outputs[name] = out
    return code


@contextmanager
def serving(world: Protected, name: str, env: dict) -> Iterator[str]:
    """`pneumo serve` on a free port until the block ends; its output kept under `name`."""
    log, port = world.home.parent / f"{name}.log", free_port()
    command = [sys.executable, "-m", "flows.cli", "serve", "--port", str(port)]
    try:
        with processes.running(name, command, env=env, cwd=world.home.parent, log=log):
            yield f"http://127.0.0.1:{port}"
    finally:
        world.outputs[name] = log.read_text(errors="replace")


@pytest.fixture(scope="module")
def world(s3: S3Credentials, tmp_path_factory) -> Iterator[Protected]:
    work = tmp_path_factory.mktemp("protected")
    suffix = secrets.token_hex(4)
    buckets = [f"raw-{suffix}", f"data-{suffix}", f"mlflow-{suffix}"]
    Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False).make_bucket(buckets[2])
    auth, prefect_auth = BasicAuth.generated(), f"admin:{secrets.token_urlsafe(12)}"
    mlflow = mlflow_server(work / "mlflow", s3, buckets[2], auth).start()
    prefect = prefect_server(work / "prefect", prefect_auth)
    try:
        prefect.start()
        (work / "home").mkdir()
        yield Protected(mlflow, prefect, auth, prefect_auth, s3, buckets, work / "home")
    finally:
        prefect.stop()
        mlflow.stop()


@pytest.fixture(scope="module")
def ran(world: Protected) -> Protected:
    """Every run, succeeding and failing, with the secrets each was given."""
    wrong = secrets.token_urlsafe(12)
    api_key_file = world.home.parent / "api-keys"
    world.secrets |= {
        "S3 access key": world.s3.access_key,
        "S3 secret key": world.s3.secret_key,
        "MLflow password": world.auth.password,
        "MLflow Flask key": world.auth.flask_secret,
        "Prefect auth string": world.prefect_auth,
        "Prefect auth password": world.prefect_auth.split(":", 1)[1],
        "a wrong MLflow password": wrong,
    }
    env = env_for(world)
    data = tiny_subset(world.home.parent / "chest_xray")
    assert pneumo(world, "ingest", ["ingest", str(data)], env) == 0, world.outputs["ingest"]
    assert pneumo(world, "train", ["train"], env) == 0, world.outputs["train"][-3000:]

    assert pneumo(world, "api-key", ["api-key", "new", "--file", str(api_key_file)], env) == 0
    key = re.search(r"the key \(shown only now\): (\S+)", world.outputs["api-key"])[1]
    world.outputs.pop("api-key")  # it is meant to show the key, once
    world.secrets["API key"] = key
    served = env | {"PNEUMO_SERVE_API_KEYS_FILE": str(api_key_file)}
    with serving(world, "serve", served) as url:
        health = wait_until(
            lambda: json_of(f"{url}/health"), lambda r: r[0] == 200, timeout=120, what="ready"
        )
        image = next((SAMPLE / "test" / "NORMAL").iterdir()).read_bytes()
        world.outputs["predict"] = predict(url, image, key)
        world.outputs["health"] = json.dumps(health[1])

    bad_setting = {k: v for k, v in env.items() if k != "PNEUMO_S3_ENDPOINT"}
    assert pneumo(world, "bad-setting", ["ingest", str(data)], bad_setting) == 2
    assert pneumo(world, "wrong-password", ["train"], env_for(world, password=wrong)) != 0
    gone = env_for(world, password=wrong, host=f"127.0.0.1:{free_port()}")
    with serving(world, "unreachable", gone) as url:
        _, body = wait_until(
            lambda: json_of(f"{url}/health"),
            lambda r: r[0] == 503 and r[1].get("error"),
            timeout=60,
            what="a 503 naming why no model is loaded",
        )
        world.outputs["unreachable-health"] = json.dumps(body)
    return world


def predict(url: str, image: bytes, key: str) -> str:
    boundary = secrets.token_hex(8)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpeg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    replies = []
    for extra in ({}, {"Authorization": f"Bearer {key}"}):
        request = urllib.request.Request(f"{url}/predict", body, headers | extra, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                replies.append((response.status, response.read().decode()))
        except urllib.error.HTTPError as exc:
            replies.append((exc.code, exc.read().decode()))
    assert [status for status, _ in replies] == [401, 200], replies
    return replies[1][1]


def stored_texts(world: Protected) -> Iterator[tuple[str, bytes]]:
    """Every file the runs and servers wrote, and every object in the runs' buckets."""
    roots = [world.home, world.home.parent / "mlflow", world.home.parent / "prefect"]
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and path.name != "basic_auth.ini":
                yield str(path), path.read_bytes()
    client = Minio(world.s3.endpoint, world.s3.access_key, world.s3.secret_key, secure=False)
    for bucket in world.buckets:
        for found in client.list_objects(bucket, recursive=True):
            yield (
                f"s3://{bucket}/{found.object_name}",
                client.get_object(bucket, found.object_name).read(),
            )


def test_protected_servers_refuse_anonymous_calls(world: Protected) -> None:
    search = f"http://{world.tracking_host}/api/2.0/mlflow/experiments/search?max_results=1"
    login = f"{world.auth.username}:{world.auth.password}".encode()
    assert status_of(search) == 401
    assert status_of(search, {"Authorization": f"Basic {base64.b64encode(login).decode()}"}) == 200
    api = world.prefect.health_url.removesuffix("/health")
    assert status_of(f"{api}/flows/filter") == 401  # refused before routing


def test_the_runs_did_what_they_should(ran: Protected) -> None:
    assert '"label"' in ran.outputs["predict"]
    assert "PNEUMO_S3_ENDPOINT" in ran.outputs["bad-setting"]
    assert "error:" in ran.outputs["wrong-password"]
    unreachable = json.loads(ran.outputs["unreachable-health"])["error"]
    assert "***@127.0.0.1" in unreachable or "Connection" in unreachable, unreachable


def test_no_secret_appears_in_any_output(ran: Protected) -> None:
    leaks = [
        f"{what} in the output of {name}"
        for name, out in ran.outputs.items()
        for what, secret in ran.secrets.items()
        if secret in out
    ]
    searched = 0
    for where, data in stored_texts(ran):
        searched += 1
        leaks += [f"{what} in {where}" for what, s in ran.secrets.items() if s.encode() in data]
    assert searched > 50, f"only {searched} files and objects searched"
    assert leaks == []
