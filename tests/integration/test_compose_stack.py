"""The compose stack, run as local processes with docker-compose.yml's own configuration.

Every long-running service starts as a process with the environment, secrets, command and
mounted scripts compose gives it (read from the file: see tests/integration/compose.py):
SeaweedFS stands in for MinIO, PostgreSQL is Debian's, then the
MLflow server (on Postgres, artifacts proxied to S3, basic auth), its one-shot user setup, the
Prefect server (on Postgres, auth on), a process worker on the work pool, and the API.

Then what a team does with it: `pneumo ingest` and `pneumo deploy`; a training deployment run
started through the Prefect API completes on the worker (a reviewer approves through the API,
as compose asks for approval); the API serves the new champion; a drift event starts the
retraining deployment on the worker.

Changed for speed only (the same knobs as the other flow tests): the `tiny` training profile,
open gates, and short polling intervals. What compose runs and this test does not: MinIO's
`mc` bucket and user setup (`infra/minio/init.sh`: here the buckets are made through the S3 API
and SeaweedFS's identities carry the same two users), the one-shot volume chown, healthchecks.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from minio import Minio

from benchmarks.servers import s3_identity
from tests import processes, summary
from tests.conftest import FAST_TRAINING, OPEN_GATES, SAMPLE, tiny_subset
from tests.integration.compose import Network, image_environment, interpolate, services
from tests.integration.services import (
    BIN,
    Service,
    free_port,
    postgres_bin,
    postgres_server,
    seaweed,
)
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]
HOST_ENV: dict[str, str] = {}  # no .env file: every ${NAME:-default} takes its default
SPEED = {
    **FAST_TRAINING,
    **OPEN_GATES,
    "PNEUMO_TRAIN__RESNET_SCRATCH_EPOCHS": "0",
    "PNEUMO_SHIFT_CHECK_IMAGES": "4",
    "PREFECT_WORKER_QUERY_SECONDS": "2",
    "PNEUMO_SERVE_POLL_SECONDS": "2",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
COMPOSE = services()


@dataclass
class Stack:
    root: Path
    network: Network
    secrets: Path
    api_key: str
    ports: dict[str, int]
    running: list[Service] = field(default_factory=list)

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text().strip()

    def env(self, name: str, **extra: str) -> dict[str, str]:
        """A compose service's whole environment, as its container would have it."""
        service = COMPOSE[name]
        own_secrets = service.secrets_dir(self.secrets, self.root / "run-secrets" / name)
        image = {k: self.network.localize(v) for k, v in image_environment().items()}
        tmp = self.root / "tmp" / name
        tmp.mkdir(parents=True, exist_ok=True)
        (self.root / "home").mkdir(exist_ok=True)
        base = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(self.root / "home"), "TMPDIR": str(tmp)}
        return {
            **base,
            **image,
            **service.environment(self.network, own_secrets, HOST_ENV),
            **SPEED,
            **extra,
        }

    def start(self, name: str, health_url: str, ready=None) -> Service:
        """A compose service as a process, through its own entrypoint (infra/with-secrets.sh)."""
        command = COMPOSE[name].command(self.network)
        service = Service(
            name, command, health_url, self.root, self.env(name), inherit_env=False, ready=ready
        )
        if name == "worker":
            service.grace = processes.PREFECT_WORKER_GRACE
        self.running.append(service.start(timeout=180))
        return service

    def run_once(self, name: str, arguments: list[str] | None = None, **extra: str) -> str:
        """A one-shot (`docker compose run NAME [ARGUMENTS]`) to its end; its output. Fails the
        test on a non-zero exit."""
        command = COMPOSE[name].command(self.network, arguments)
        log = self.root / f"{name}-{(arguments or ['once'])[0].rsplit('/', 1)[-1]}.log"
        env = self.env(name, **extra)
        with processes.running(name, command, env=env, cwd=self.root, log=log) as process:
            code = process.wait(timeout=600)
        output = log.read_text(errors="replace")
        assert code == 0, f"{name} exited with {code}:\n{output[-3000:]}"
        return output

    @property
    def prefect(self) -> httpx.Client:
        user, password = self.secret("prefect_auth_string").split(":", 1)
        base = f"http://127.0.0.1:{self.ports['prefect']}/api"
        return httpx.Client(base_url=base, auth=(user, password), timeout=30)


def make_secrets(root: Path) -> tuple[Path, str]:
    """infra/make_secrets.sh, run as a user runs it; the secrets folder and the API key it
    prints once."""
    done = subprocess.run(
        ["sh", str(Path(__file__).parents[2] / "infra" / "make_secrets.sh")],
        cwd=root, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    key = re.search(r"\bpk_[0-9a-f]+", done.stdout)
    assert key, done.stdout
    return root / "secrets", key[0]


def compose_network(root: Path, ports: dict[str, int], s3_endpoint: str) -> Network:
    local = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    return Network(
        values={
            "0.0.0.0": "127.0.0.1",
            "postgres": "127.0.0.1",
            "5432": str(ports["postgres"]),
            "5000": str(ports["mlflow"]),
            "4200": str(ports["prefect"]),
            "8000": str(ports["api"]),
            "8080": str(ports["worker"]),
        },
        addresses={
            "minio:9000": s3_endpoint,
            "postgres:5432": local["postgres"],
            "mlflow:5000": local["mlflow"],
            "prefect-server:4200": local["prefect"],
            "127.0.0.1:4200": local["prefect"],  # the published port, in the UI's API URL
            "/var/lib/pneumo": str(root / "pneumo-state"),  # the pneumo-state volume
        },
    )


def start_storage(stack: Stack) -> None:
    """SeaweedFS with compose's two S3 users, and the buckets minio-init would make."""
    data_bucket = interpolate("${PNEUMO_S3_BUCKET_DATA:-pneumo-data}", HOST_ENV)
    users = (
        s3_identity(
            "pneumo-pipeline",
            stack.secret("pipeline_s3_access_key"),
            stack.secret("pipeline_s3_secret_key"),
            ["Read", "List", "Write", "Tagging"],
        ),
        # The API's own user: the data bucket only (MinIO's policy narrows it to the logs).
        s3_identity(
            "pneumo-api",
            stack.secret("api_s3_access_key"),
            stack.secret("api_s3_secret_key"),
            [f"Read:{data_bucket}", f"List:{data_bucket}", f"Write:{data_bucket}"],
        ),
    )
    service, admin = seaweed(stack.root / "s3", users, stack.ports["s3"])
    stack.running.append(service.start())
    client = Minio(admin.endpoint, admin.access_key, admin.secret_key, secure=False)
    for key, value in COMPOSE["minio-init"].spec["environment"].items():
        if key.startswith("PNEUMO_S3_BUCKET_"):
            client.make_bucket(interpolate(value, HOST_ENV))


def start_postgres(stack: Stack) -> None:
    """PostgreSQL with compose's superuser and password, then compose's own init script: one
    database and one user per service."""
    env = stack.env("postgres")
    password = Path(env["POSTGRES_PASSWORD_FILE"]).read_text()
    port = stack.ports["postgres"]
    service = postgres_server(stack.root / "postgres", env["POSTGRES_USER"], password, port)
    stack.running.append(service.start())
    init = COMPOSE["postgres"].mounts()["/docker-entrypoint-initdb.d/init-databases.sh"]
    stack.run_once(
        "postgres",
        ["sh", str(init)],
        PATH=f"{postgres_bin()}:/usr/bin:/bin",
        PGHOST="127.0.0.1",
        PGPORT=str(port),
        PGPASSWORD=password,
    )


def sql(stack: Stack, query: str, database: str = "postgres") -> str:
    """A query's rows as psql prints them unaligned, run as the superuser."""
    env = stack.env("postgres")
    command = [
        str(postgres_bin() / "psql"), "-h", "127.0.0.1", "-p", str(stack.ports["postgres"]),
        "-U", env["POSTGRES_USER"], "-d", database, "-tAc", query,
    ]  # fmt: skip
    password = Path(env["POSTGRES_PASSWORD_FILE"]).read_text()
    done = subprocess.run(
        command, env={"PGPASSWORD": password}, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def answers(url: str) -> bool:
    """Any HTTP answer: the API says 503 until a champion exists, and that is up."""
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    started = time.perf_counter()
    root = tmp_path_factory.mktemp("compose")
    secrets_dir, api_key = make_secrets(root)
    ports = {name: free_port() for name in ("s3", "postgres", "mlflow", "prefect", "api", "worker")}
    network = compose_network(root, ports, f"127.0.0.1:{ports['s3']}")
    stack = Stack(root, network, secrets_dir, api_key, ports)
    try:
        start_storage(stack)
        start_postgres(stack)
        stack.start("mlflow", f"http://127.0.0.1:{ports['mlflow']}/health")
        stack.run_once("mlflow-users")
        stack.start("prefect-server", f"http://127.0.0.1:{ports['prefect']}/api/health")
        stack.start("worker", f"http://127.0.0.1:{ports['worker']}/health")
        health = f"http://127.0.0.1:{ports['api']}/health"
        stack.start("api", health, ready=lambda: answers(health))
        summary.record("compose stack", "start", time.perf_counter() - started)
        yield stack
    finally:
        for service in reversed(stack.running):
            service.stop()
        summary.record("compose stack", "test", time.perf_counter() - started)


def deployment_run(stack: Stack, name: str) -> str:
    """Start a run of deployment `flow/deployment` through the Prefect API; its id."""
    with stack.prefect as api:
        deployment = api.get(f"/deployments/name/{name}").raise_for_status().json()
        run = api.post(f"/deployments/{deployment['id']}/create_flow_run", json={})
        return run.raise_for_status().json()["id"]


def finish_approving(stack: Stack, flow_run_id: str) -> dict:
    """Wait for the run to end, approving each version it pauses on (compose asks a person)."""

    def step() -> dict:
        with stack.prefect as api:
            run = api.get(f"/flow_runs/{flow_run_id}").raise_for_status().json()
            if run["state"]["type"] == "PAUSED":
                answer = {"decision": "approve", "reviewer": "stack test", "reason": "tiny run"}
                api.post(f"/flow_runs/{flow_run_id}/resume", json={"run_input": answer})
        return run

    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    return wait_until(
        step,
        lambda run: run["state"]["type"] in final,
        timeout=900,
        interval=2,
        what="the training deployment run to finish on the worker",
        describe=lambda run: (
            f"{run['state']['type']}; worker log: "
            + (stack.root / "worker.log").read_text(errors="replace")[-3000:]
        ),
    )


def emit_drift_event(stack: Stack, resource: str) -> None:
    """The event `drift-check` emits on drift, sent to the server's events API."""
    from flows.monitoring import DRIFT_EVENT

    event = {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": DRIFT_EVENT,
        "resource": {"prefect.resource.id": resource},
    }
    with stack.prefect as api:
        api.post("/events", json=[event]).raise_for_status()


def test_the_stack_trains_serves_and_retrains_on_drift(stack: Stack) -> None:
    from flows.monitoring import DRIFT_EVENT

    worker_env = stack.env("worker")
    data = tiny_subset(stack.root / "chest_xray")
    stack.run_once("worker", ["pneumo", "ingest", str(data)])
    deployed = stack.run_once("worker", ["pneumo", "deploy"])
    assert "on pool pneumo-process" in deployed

    run = finish_approving(stack, deployment_run(stack, "training-pipeline/weekly-training"))
    assert run["state"]["type"] == "COMPLETED", (stack.root / "worker.log").read_text()[-3000:]

    # The API (its own read-only MLflow user, its own S3 user) follows the new champion.
    headers = {"X-API-Key": stack.api_key}
    api = f"http://127.0.0.1:{stack.ports['api']}"
    health = wait_until(
        lambda: httpx.get(f"{api}/health", timeout=10).json(),
        lambda body: body["status"] == "ready",
        timeout=120,
        interval=1,
        what="the API to load the champion",
    )
    assert health["model"] == "pneumonia-resnet" and health["version"] == "1"
    image = next((SAMPLE / "test" / "PNEUMONIA").iterdir())
    reply = httpx.post(
        f"{api}/predict", headers=headers, files={"file": (image.name, image.read_bytes())}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"][0]["version"] == "1"
    # Scraped as compose's Prometheus scrapes it: with its own key (infra/prometheus).
    scraper = {"Authorization": f"Bearer {stack.secret('metrics_api_key')}"}
    metrics = httpx.get(f"{api}/metrics", headers=scraper).text
    assert 'pneumo_model_info{name="pneumonia-resnet",version="1"' in metrics
    assert 'pneumo_predictions_total{label="' in metrics

    # MLflow and Prefect keep their state in their own Postgres databases, as their own users.
    owners = sql(stack, "SELECT datname, pg_get_userbyid(datdba) FROM pg_database").splitlines()
    assert {"mlflow|mlflow", "mlflow_auth|mlflow", "prefect|prefect"} <= set(owners)
    assert "pneumonia-resnet" in sql(stack, "SELECT name FROM registered_models", "mlflow")
    assert "pneumo-api" in sql(stack, "SELECT username FROM users", "mlflow_auth")
    assert int(sql(stack, "SELECT count(*) FROM flow_run", "prefect")) >= 1

    # A drift event starts the retraining deployment, which the worker picks up.
    resource = f"{DRIFT_EVENT}:s3://pneumo-data/reports/drift/stack-test.html"
    assert worker_env["PNEUMO_APPROVAL"] == "required"

    def retrain_runs() -> list[dict]:
        with stack.prefect as api_client:
            runs = api_client.post("/flow_runs/filter", json={}).raise_for_status().json()
        return [r for r in runs if r["parameters"].get("drift_report") == resource]

    emit_drift_event(stack, resource)
    started = wait_until(
        retrain_runs,
        lambda runs: bool(runs) and runs[0]["state"]["type"] not in ("SCHEDULED", "PENDING"),
        timeout=120,
        interval=1,
        what="a retrain-champion run, started by the drift event, to be taken by the worker",
    )
    assert started[0]["parameters"]["reason"] == "drift detected"
