"""MLflow adapter: tracking, model logging, the registry and its aliases.

The only module that imports mlflow. Aliases `champion` and `challenger` replace the deprecated
stages. Every move of `champion` records who, why and the version it replaced, so rollback
needs no other state.
"""

from __future__ import annotations

import getpass
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_NAMES = {"cnn": "pneumonia-cnn", "resnet": "pneumonia-resnet"}
# Listing requirements skips MLflow's slow inference of them (about 9 s a model).
PIP_REQUIREMENTS = ["tensorflow-cpu", "keras>=3", "numpy"]


class RegistryError(Exception):
    """A registry request that cannot be honoured (unknown version, refused promotion)."""


def configure(tracking_uri: str, experiment: str, artifacts_dir: Path | None) -> str:
    """Point MLflow at `tracking_uri` and return the experiment id (created if missing).

    A new experiment gets its artifacts under `artifacts_dir` (the embedded default), never in
    the caller's working directory; a tracking server chooses its own artifact store.
    """
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    exported = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    # MLflow also exports the URI to the environment; undo that, or a later configure() in the
    # same process (a long-lived service, a test session) would take this stale value as the
    # user's MLFLOW_TRACKING_URI instead of resolving its own settings.
    if exported is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = exported
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = None
    if artifacts_dir is not None and not tracking_uri.startswith("http"):
        artifacts_dir.mkdir(parents=True, exist_ok=True)
        location = artifacts_dir.resolve().as_uri()
    return client.create_experiment(experiment, artifact_location=location)


@dataclass(frozen=True)
class Candidate:
    """Everything logged for one trained model."""

    kind: str
    params: dict[str, object]
    metrics: dict[str, float]
    history: dict[str, list[float]]
    artifacts: list[Path]
    tags: dict[str, str]
    input_example: np.ndarray


def log_candidate(experiment_id: str, candidate: Candidate, model) -> tuple[str, str]:
    """Log a run with the model and register it; returns (run_id, version). Tags go on both."""
    import mlflow
    from mlflow.models import infer_signature

    name = MODEL_NAMES[candidate.kind]
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in candidate.params.items()})
        mlflow.log_metrics({f"test_{k}": v for k, v in candidate.metrics.items() if np.isfinite(v)})
        for metric, values in candidate.history.items():
            for epoch, value in enumerate(values):
                mlflow.log_metric(f"epoch_{metric}", value, step=epoch)
        for path in candidate.artifacts:
            mlflow.log_artifact(str(path), artifact_path="evaluation")
        mlflow.set_tags(candidate.tags)
        signature = infer_signature(
            candidate.input_example, model.predict(candidate.input_example, verbose=0)
        )
        with tempfile.TemporaryDirectory() as tmp:
            # mlflow.keras.log_model fails when given an input example (mlflow#16183, open):
            # save into a folder that exists, then log and register that folder.
            folder = Path(tmp) / "model"
            folder.mkdir()
            mlflow.keras.save_model(
                model,
                str(folder),
                signature=signature,
                input_example=candidate.input_example,
                pip_requirements=PIP_REQUIREMENTS,
            )
            mlflow.log_artifacts(str(folder), artifact_path="model")
    registered = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    version = str(registered.version)
    client = mlflow.MlflowClient()
    for key, value in candidate.tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    return run.info.run_id, version


def champion_version(name: str):
    """The version behind `champion`, or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def load_version(name: str, version: str):
    import mlflow

    return mlflow.keras.load_model(f"models:/{name}/{version}")


def move_champion(name: str, version: str, reason: str, *, rollback: bool = False) -> None:
    """Point `champion` at `version`, recording who, why, when and what it replaced.

    A rollback keeps the target's own `previous_champion`, so repeated rollbacks walk back
    through the history instead of bouncing between two versions.
    """
    import mlflow

    client = mlflow.MlflowClient()
    current = champion_version(name)
    stamp = {
        "champion_by": getpass.getuser(),
        "champion_reason": reason,
        "champion_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if not rollback:
        stamp["previous_champion"] = str(current.version) if current is not None else ""
    client.set_registered_model_alias(name, CHAMPION, version)
    for key, value in stamp.items():
        client.set_model_version_tag(name, version, key, value)
    history = json.loads(client.get_registered_model(name).tags.get("champion_history", "[]"))
    history.append({"version": version, **stamp})
    client.set_registered_model_tag(name, "champion_history", json.dumps(history[-50:]))


def _version(name: str, version: str):
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_model_version(name, version)
    except MlflowException:
        raise RegistryError(f"model {name!r} has no version {version!r}") from None


def promote(name: str, version: str, reason: str, *, force: bool = False) -> None:
    """Hand promotion; a version whose gate failed needs `force`."""
    found = _version(name, version)
    if found.tags.get("gate_passed") != "true" and not force:
        why = found.tags.get("gate_reasons", "no gate recorded")
        raise RegistryError(
            f"{name} version {version} did not pass its gate ({why}); "
            "use --force to promote it anyway"
        )
    move_champion(name, version, f"{'forced ' if force else ''}promotion: {reason}")


def rollback(name: str, reason: str) -> str:
    """Move `champion` back to the version it replaced; returns that version."""
    current = champion_version(name)
    if current is None:
        raise RegistryError(f"model {name!r} has no champion to roll back")
    previous = current.tags.get("previous_champion", "")
    if not previous:
        raise RegistryError(
            f"{name} champion version {current.version} replaced no earlier champion"
        )
    _version(name, previous)
    move_champion(
        name, previous, f"rollback from version {current.version}: {reason}", rollback=True
    )
    return previous


REFERENCE_DIR = "reference"


def log_reference(run_id: str, features, projection: dict) -> None:
    """Store the training-image feature profile and PCA with the run that made the version."""
    import mlflow

    client = mlflow.MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        features.to_parquet(folder / "features.parquet", index=False)
        (folder / "projection.json").write_text(json.dumps(projection))
        client.log_artifacts(run_id, str(folder), artifact_path=REFERENCE_DIR)


def download_reference(run_id: str, target: Path) -> Path:
    """The version's reference folder (features.parquet, projection.json), downloaded."""
    import mlflow
    from mlflow.exceptions import MlflowException

    target.mkdir(parents=True, exist_ok=True)
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=REFERENCE_DIR, dst_path=str(target)
        )
    except MlflowException as exc:
        raise FileNotFoundError(f"run {run_id} has no {REFERENCE_DIR}/ artifacts: {exc}") from None
    return Path(path)


def log_run_artifact(run_id: str, path: Path, artifact_path: str) -> str:
    """Attach a file to an existing run; returns its artifact URI."""
    import mlflow

    client = mlflow.MlflowClient()
    client.log_artifact(run_id, str(path), artifact_path=artifact_path)
    return f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}/{path.name}"


def version_info(name: str, version: str) -> dict:
    """What a person asks of a served version: tags that matter and its test metrics."""
    import mlflow

    client = mlflow.MlflowClient()
    found = client.get_model_version(name, version)
    metrics = client.get_run(found.run_id).data.metrics if found.run_id else {}
    keys = ("threshold", "weights_source", "manifest_id", "gate_passed", "git_commit", "profile")
    return {
        "name": name,
        "version": str(version),
        "run_id": found.run_id,
        **{key: found.tags.get(key) for key in keys},
        "metrics": {
            k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")
        },
    }
