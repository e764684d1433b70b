"""infra/k8s manifests and infra/workpools job templates, checked offline: against Kubernetes'
own schemas (kubernetes-validate, strict: an unknown field fails), and against the variables
the Docker and Kubernetes workers really define."""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from prefect.utilities.templating import apply_values, find_placeholders

from tests.conftest import REPO

KUBERNETES = "1.30.0"  # the oldest minor still in upstream support in 2026; strict schemas
MANIFESTS = sorted((REPO / "infra" / "k8s").glob("*.yaml"))
TEMPLATES = REPO / "infra" / "workpools"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|AUTH_STRING|TOKEN", re.IGNORECASE)


def documents() -> list[tuple[str, dict]]:
    return [
        (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
        for path in MANIFESTS
        for doc in yaml.safe_load_all(path.read_text())
    ]


def render_job(template: dict) -> dict:
    """The Job a Kubernetes worker would create from the template's defaults (it renders the
    placeholders, then turns the env mapping into Kubernetes' list of name/value pairs)."""
    defaults = {
        name: spec.get("default")
        for name, spec in template["variables"]["properties"].items()
        if "default" in spec
    }
    job = apply_values(template["job_configuration"]["job_manifest"], defaults, remove_notset=True)
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": k, "value": v} for k, v in (container.get("env") or {}).items()]
    container.setdefault("args", ["prefect", "flow-run", "execute"])
    return job


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[n for n, _ in documents()])
def test_every_manifest_is_valid_kubernetes(name: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    assert doc["metadata"].get("namespace", "pneumo") == "pneumo" or doc["kind"] == "Namespace"


@pytest.mark.parametrize("file", ["kubernetes.json", "kubernetes-gpu.json"])
def test_kubernetes_job_templates_render_valid_jobs_with_bounded_resources(file: str) -> None:
    template = json.loads((TEMPLATES / file).read_text())
    job = render_job(template)
    kubernetes_validate.validate(job, KUBERNETES, strict=True)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith("pneumo-ops:")
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert container["securityContext"]["runAsNonRoot"] is True
    # Secrets come from a Kubernetes Secret, never from the template's values.
    assert {"secretRef": {"name": "pneumo-pipeline"}} in container["envFrom"]
    assert not any(SECRET_NAME.search(e["name"]) for e in container["env"])
    gpus = container["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpus == 1) == (file == "kubernetes-gpu.json")


@pytest.mark.parametrize(
    ("file", "worker"),
    [
        ("docker.json", "prefect_docker.worker:DockerWorker"),
        ("kubernetes.json", "prefect_kubernetes.worker:KubernetesWorker"),
        ("kubernetes-gpu.json", "prefect_kubernetes.worker:KubernetesWorker"),
    ],
)
def test_templates_use_only_what_their_worker_defines(file: str, worker: str) -> None:
    """Every variable the worker defines is kept; every placeholder names a variable."""
    module, name = worker.split(":")
    default = getattr(__import__(module, fromlist=[name]), name).get_default_base_job_template()
    template = json.loads((TEMPLATES / file).read_text())
    variables = template["variables"]["properties"]
    assert set(default["variables"]["properties"]) <= set(variables)
    assert set(default["job_configuration"]) == set(template["job_configuration"])
    used = {p.name for p in find_placeholders(template["job_configuration"])}
    assert used <= set(variables), used - set(variables)
    assert variables["image"]["default"].startswith("pneumo-ops:")


def test_the_api_is_probed_on_health_and_the_worker_may_only_run_jobs() -> None:
    docs = dict(documents())
    api = docs["api.yaml:Deployment/pneumo-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/health"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert api["resources"]["limits"]["memory"] and api["resources"]["requests"]["cpu"]
    for env in api["env"]:
        if SECRET_NAME.search(env["name"]):
            assert "secretKeyRef" in env["valueFrom"], env["name"]
    rules = docs["worker.yaml:Role/pneumo-worker"]["rules"]
    assert {r for rule in rules for r in rule["resources"]} == {
        "jobs", "pods", "pods/log", "pods/status", "events",
    }  # fmt: skip
    assert not any("*" in rule["verbs"] for rule in rules)


def test_every_manifest_file_is_documented() -> None:
    readme = (REPO / "docs" / "how-to" / "work-pools.md").read_text()
    for path in [*MANIFESTS, *TEMPLATES.glob("*.json")]:
        assert str(Path(path).relative_to(REPO)) in readme, path.name
