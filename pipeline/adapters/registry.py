"""MLflow adapter: tracking, model logging, the registry and its aliases.

The only module that imports mlflow. A `Registry` is built from the settings and passed to what
needs it; it talks to MLflow through its own client for its own tracking URI and never sets
MLflow's process-wide tracking URI, so two registries in one process (a test session, a service)
cannot see each other's state. Aliases `champion` and `challenger` replace the deprecated stages.
Every move of `champion` records who, why and the version it replaced, so rollback needs no
other state.

A version is registered in one call, with all its tags, after everything it needs (model,
evaluation artifacts, reference profile) is stored in its run: a crash leaves either no version
or a complete one. The callers that move `champion` hold the lock of `pipeline.locks`.
"""

from __future__ import annotations

import getpass
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import PneumoError
from pipeline.processes import is_orphaned, owner

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from pipeline.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_NAMES = {"cnn": "pneumonia-cnn", "resnet": "pneumonia-resnet"}
MODEL_DIR = "model"
REFERENCE_DIR = "reference"
# Listing requirements skips MLflow's slow inference of them (about 9 s a model).
PIP_REQUIREMENTS = ["tensorflow-cpu", "keras>=3", "numpy"]
VERSION_INFO_TAGS = (
    "threshold", "weights_source", "manifest_id", "gate_passed", "git_commit", "profile",
    "site_threshold", "site_accepted", "site_acceptance_id", "site_summary",
)  # fmt: skip
# What a version must carry to be scored, promoted or served.
REQUIRED_TAGS = ("threshold", "gate_passed", "weights_source", "image_size", "manifest_id")
INCOMPLETE_TAG = "incomplete"
HISTORY_PREFIX = "champion_move_"  # one registered-model tag per move: no read-modify-write


class RegistryError(PneumoError):
    """A registry request that cannot be honoured (unknown version, refused promotion)."""


def threshold_of(version: Any) -> float:
    """The decision threshold in force: the site's once `pneumo site accept` recorded one
    (`site_threshold`), else the one the version was registered with; never a silent default."""
    raw = version.tags.get("site_threshold") or version.tags.get("threshold")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise RegistryError(
            f"{version.name} version {version.version} has no usable threshold tag ({raw!r}): "
            "it was not registered completely; `pneumo doctor` lists such versions"
        )
    return value


def is_transient_registry_error(exc: BaseException) -> bool:
    """An MLflow error worth retrying: the server answered 5xx or its database was locked."""
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, RestException):  # an answer from a tracking server
        return exc.get_http_status_code() >= 500
    return isinstance(exc, MlflowException) and "database is locked" in str(exc)


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
    description: str = ""  # the version's one-paragraph summary in the registry UI
    started_ms: int | None = None  # training start: the run's start time
    dataset: dict[str, str] | None = None  # the training manifest: name, digest, source, profile


@dataclass(frozen=True)
class Reference:
    """The drift reference of a monitored model: per-image features and the fitted PCA, and
    the intended-use distance fitted on the same films (None for older versions)."""

    features: pd.DataFrame
    projection: dict
    scope: dict | None = None


# What MLflow answers for a model or alias that does not exist (SQL store, REST server).
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


class Registry:
    """One MLflow tracking server and model registry, and the experiment runs are logged to."""

    def __init__(self, tracking_uri: str, experiment: str, artifacts_dir: Path | None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifacts_dir = artifacts_dir

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        return cls(settings.tracking_uri(), settings.experiment, settings.artifacts_dir)

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self._refuse_moved_store(client)
        return client

    def _refuse_moved_store(self, client: MlflowClient) -> None:
        """A state directory moved or copied elsewhere keeps its old absolute artifact paths:
        new runs would be written into the old place and models read from it. Refuse, saying
        where each is, rather than write through."""
        if self.artifacts_dir is None or self.tracking_uri.startswith("http"):
            return
        found = client.get_experiment_by_name(self.experiment)
        expected = self.artifacts_dir.resolve().as_uri()
        if found is None or not found.artifact_location.startswith("file:"):
            return
        if found.artifact_location.rstrip("/") != expected:
            raise RegistryError(
                f"the state directory {self.artifacts_dir.parent.resolve()} was moved or copied: "
                f"its MLflow store ({self.tracking_uri}) keeps artifacts at "
                f"{found.artifact_location}, not at {expected}, so runs would be written to "
                "(and models read from) the old place. Move it back, or start with a fresh "
                "PNEUMO_HOME."
            )

    def experiment_id(self) -> str:
        """The experiment's id, created if missing.

        A new experiment gets its artifacts under `artifacts_dir` (the embedded default), never
        in the caller's working directory; a tracking server chooses its own artifact store.
        """
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = None
        if self.artifacts_dir is not None and not self.tracking_uri.startswith("http"):
            self.artifacts_dir.mkdir(parents=True, exist_ok=True)
            location = self.artifacts_dir.resolve().as_uri()
        return self.client.create_experiment(self.experiment, artifact_location=location)

    def log_candidate(
        self,
        candidate: Candidate,
        model: Any,
        reference: Reference | None = None,
        checkpoint: Callable[[str], None] = lambda step: None,
    ) -> tuple[str, str]:
        """Log a run with the model (and reference profile), then register it in one call.

        Returns (run_id, version). Tags go on both the run and the version; the new version gets
        the `challenger` alias. `checkpoint(step)` is called at each step boundary (fault tests).
        """
        from mlflow.tracking.context.registry import resolve_tags

        name = MODEL_NAMES[candidate.kind]
        # The same context tags (user, source, git commit) that mlflow.start_run records.
        tags = resolve_tags({**candidate.tags, **owner()})
        run = self.client.create_run(
            self.experiment_id(), start_time=candidate.started_ms, run_name=name, tags=tags
        )
        run_id = run.info.run_id
        checkpoint("register:run-created")
        try:
            self._log_run_contents(run_id, candidate, model)
            if reference is not None:
                self.log_reference(run_id, reference)
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        checkpoint("register:run-logged")
        self.client.set_terminated(run_id)
        version = self._register(name, f"{run.info.artifact_uri}/{MODEL_DIR}", run_id, candidate)
        checkpoint("register:version-created")
        self.client.set_registered_model_alias(name, CHALLENGER, version)
        return run_id, version

    def _log_run_contents(self, run_id: str, candidate: Candidate, model: Any) -> None:
        import mlflow
        from mlflow.entities import Metric, Param
        from mlflow.models import infer_signature

        now = int(datetime.now(UTC).timestamp() * 1000)
        params = [Param(k, str(v)[:500]) for k, v in candidate.params.items()]
        metrics = [
            Metric(f"test_{k}", float(v), now, 0)
            for k, v in candidate.metrics.items()
            if np.isfinite(v)
        ]
        metrics += [
            Metric(f"epoch_{name}", float(value), now, epoch)
            for name, values in candidate.history.items()
            for epoch, value in enumerate(values)
        ]
        self.client.log_batch(run_id, params=params)
        if candidate.dataset is not None:
            self._log_dataset(run_id, candidate.dataset)
        for start in range(0, len(metrics), 1000):  # MLflow's per-request limit
            self.client.log_batch(run_id, metrics=metrics[start : start + 1000])
        for path in candidate.artifacts:
            self.client.log_artifact(run_id, str(path), artifact_path="evaluation")
        signature = infer_signature(
            candidate.input_example, model.predict(candidate.input_example, verbose=0)
        )
        with tempfile.TemporaryDirectory() as tmp:
            # mlflow.keras.log_model fails when given an input example (mlflow#16183, open):
            # save into a folder that exists, then log that folder.
            folder = Path(tmp) / MODEL_DIR
            folder.mkdir()
            mlflow.keras.save_model(
                model,
                str(folder),
                signature=signature,
                input_example=candidate.input_example,
                pip_requirements=PIP_REQUIREMENTS,
            )
            self.client.log_artifacts(run_id, str(folder), artifact_path=MODEL_DIR)

    def _log_dataset(self, run_id: str, dataset: dict[str, str]) -> None:
        """The training manifest as the run's dataset input (MLflow's "Datasets used")."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        entity = Dataset(
            dataset["name"], dataset["digest"], "pneumo-manifest", dataset["source"],
            profile=dataset.get("profile"),
        )  # fmt: skip
        context = InputTag("mlflow.data.context", "training")
        self.client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=[context])])

    def _register(self, name: str, source: str, run_id: str, candidate: Candidate) -> str:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name)
        found = self.client.create_model_version(
            name, source, run_id, tags=candidate.tags, description=candidate.description or None
        )
        return str(found.version)

    def champion_version(self, name: str) -> Any | None:
        """The version behind `champion`, or None when the model or its alias does not exist."""
        return self.alias_version(name, CHAMPION)

    def alias_version(self, name: str, alias: str) -> Any | None:
        """The version behind `alias`, or None when the model or the alias does not exist.

        Any other failure (registry unreachable, credentials refused) is raised: taken for "no
        champion", it would let a service report no model instead of why.
        """
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if exc.error_code in NOT_FOUND_CODES:
                return None
            raise

    def require_alias(self, name: str, alias: str = CHAMPION) -> Any:
        """The version behind `alias` now; a RegistryError saying how to get one if none."""
        current = self.alias_version(name, alias)
        if current is None:
            hint = "train and promote one first" if alias == CHAMPION else "train one first"
            raise RegistryError(f"model {name!r} has no {alias} yet: {hint}")
        return current

    def version(self, name: str, version: str) -> Any:
        """A registered version; a RegistryError naming the model and version if there is none."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            known = ", ".join(sorted(m.name for m in self.client.search_registered_models()))
            raise RegistryError(
                f"no registered model {name!r} (known: {known or 'none yet'})"
            ) from None
        try:
            return self.client.get_model_version(name, version)
        except MlflowException:
            raise RegistryError(f"model {name!r} has no version {version!r}") from None

    def load_version(self, name: str, version: str) -> Any:
        """The Keras model of a registered version, downloaded from its run's artifacts."""
        import mlflow

        from pipeline.layers import CUSTOM_OBJECTS

        found = self.version(name, version)
        with tempfile.TemporaryDirectory() as tmp:
            path = self.client.download_artifacts(found.run_id, MODEL_DIR, tmp)
            return mlflow.keras.load_model(path, custom_objects=CUSTOM_OBJECTS)

    def move_champion(
        self, name: str, version: str, reason: str, *, rollback: bool = False
    ) -> bool:
        """Point `champion` at a complete `version`, recording who, why, when and what it replaced.

        Returns False, recording nothing, when `version` already is the champion: a version is
        never its own `previous_champion`. A rollback keeps the target's own
        `previous_champion`, so repeated rollbacks walk back through the history.
        """
        target = self.require_complete(name, version)
        current = self.champion_version(name)
        if current is not None and str(current.version) == str(target.version):
            return False
        stamp = {
            "champion_by": getpass.getuser(),
            "champion_reason": reason,
            "champion_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if not rollback:
            stamp["previous_champion"] = str(current.version) if current is not None else ""
        self.client.set_registered_model_alias(name, CHAMPION, version)
        for key, value in stamp.items():
            self.client.set_model_version_tag(name, version, key, value)
        # The history is append-only: a new tag per move, numbered after the last one.
        entry = {"version": str(version), "replaced": str(current.version) if current else ""}
        moves = len(self.champion_history(name)) + 1
        self.client.set_registered_model_tag(
            name, f"{HISTORY_PREFIX}{moves:06d}", json.dumps({**entry, **stamp})
        )
        return True

    def champion_history(self, name: str) -> list[dict]:
        """Every move of `champion`, oldest first."""
        tags = self.client.get_registered_model(name).tags
        keys = sorted(k for k in tags if k.startswith(HISTORY_PREFIX))
        return [json.loads(tags[k]) for k in keys]

    def promote(self, name: str, version: str, reason: str, *, force: bool = False) -> bool:
        """Hand promotion; a version whose gate failed needs `force`. False: already champion."""
        found = self.require_complete(name, version)
        if found.tags.get("gate_passed") != "true" and not force:
            why = found.tags.get("gate_reasons", "no gate recorded")
            raise RegistryError(
                f"{name} version {version} did not pass its gate ({why}); "
                "use --force to promote it anyway"
            )
        return self.move_champion(name, version, f"{'forced ' if force else ''}promotion: {reason}")

    def rollback(self, name: str, reason: str) -> str:
        """Move `champion` back to the version it replaced; returns that version."""
        current = self.champion_version(name)
        if current is None:
            raise RegistryError(f"model {name!r} has no champion to roll back")
        previous = current.tags.get("previous_champion", "")
        if not previous or previous == str(current.version):
            raise RegistryError(
                f"{name} champion version {current.version} replaced no earlier champion"
            )
        self.move_champion(
            name, previous, f"rollback from version {current.version}: {reason}", rollback=True
        )
        return previous

    def missing_parts(self, version: Any) -> list[str]:
        """What keeps a version from being usable: missing tags and artifacts, a doctor's mark."""
        missing = self._missing_contents(version)
        if version.tags.get(INCOMPLETE_TAG):
            missing.append(f"marked incomplete ({version.tags[INCOMPLETE_TAG]})")
        return missing

    def _missing_contents(self, version: Any) -> list[str]:
        missing = [f"tag {key}" for key in REQUIRED_TAGS if not version.tags.get(key)]
        folders = {MODEL_DIR, "evaluation"}
        if version.name == MODEL_NAMES["resnet"]:
            folders.add(REFERENCE_DIR)
        stored = (
            {a.path for a in self.client.list_artifacts(version.run_id)}
            if version.run_id
            else set()
        )
        missing += [f"artifacts {folder}/" for folder in sorted(folders - stored)]
        return missing

    def require_complete(self, name: str, version: str) -> Any:
        """The version, if it is complete; else a RegistryError saying what it lacks."""
        found = self.version(name, version)
        missing = self.missing_parts(found)
        if missing:
            raise RegistryError(
                f"{name} version {version} is incomplete ({', '.join(missing)}): "
                "it cannot be promoted or served"
            )
        return found

    def mark_incomplete(self) -> list[tuple[str, str, str]]:
        """Tag every incomplete version and drop its aliases; returns (model, version, why)."""
        found = []
        for model in self.client.search_registered_models():
            for version in self.client.search_model_versions(f"name='{model.name}'"):
                missing = self._missing_contents(version)
                if not missing or version.tags.get(INCOMPLETE_TAG):
                    continue
                why = ", ".join(missing)
                self.client.set_model_version_tag(model.name, version.version, INCOMPLETE_TAG, why)
                # search results leave aliases out: read the version itself
                for alias in self.client.get_model_version(model.name, version.version).aliases:
                    self.client.delete_registered_model_alias(model.name, alias)
                found.append((model.name, str(version.version), why))
        return found

    def fail_orphaned_runs(self) -> list[str]:
        """Mark FAILED the RUNNING runs of this host whose process is gone; returns their ids."""
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            return []
        runs = self.client.search_runs(
            [found.experiment_id], filter_string="attributes.status = 'RUNNING'"
        )
        orphans = [run.info.run_id for run in runs if is_orphaned(run.data.tags)]
        for run_id in orphans:
            self.client.set_terminated(run_id, "FAILED")
        return orphans

    def log_reference(self, run_id: str, reference: Reference) -> None:
        """Store the reference feature profile and PCA with the run that makes the version."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            reference.features.to_parquet(folder / "features.parquet", index=False)
            (folder / "projection.json").write_text(json.dumps(reference.projection))
            if reference.scope is not None:
                (folder / "scope.json").write_text(json.dumps(reference.scope))
            self.client.log_artifacts(run_id, str(folder), artifact_path=REFERENCE_DIR)

    def download_reference(self, run_id: str, target: Path) -> Path:
        """The version's reference folder (features.parquet, projection.json), downloaded."""
        from mlflow.exceptions import MlflowException

        target.mkdir(parents=True, exist_ok=True)
        try:
            path = self.client.download_artifacts(run_id, REFERENCE_DIR, str(target))
        except (MlflowException, OSError) as exc:
            raise FileNotFoundError(
                f"run {run_id} has no {REFERENCE_DIR}/ artifacts: {exc}"
            ) from None
        return Path(path)

    def log_run_artifact(self, run_id: str, path: Path, artifact_path: str) -> str:
        """Attach a file to an existing run; returns its artifact URI."""
        self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)
        return f"{self.client.get_run(run_id).info.artifact_uri}/{artifact_path}/{path.name}"

    def read_run_file(self, run_id: str, artifact_path: str) -> bytes:
        """One artifact file of a run, read whole (cards and figures: small)."""
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(run_id, artifact_path, tmp)
            except (MlflowException, OSError) as exc:
                raise FileNotFoundError(
                    f"run {run_id} has no artifact {artifact_path}: {exc}"
                ) from None
            return Path(path).read_bytes()

    def set_description(self, name: str, version: str, description: str) -> None:
        self.client.update_model_version(name, version, description=description[:4900])

    def set_version_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        """Tags on the version and on its run, as registration writes them."""
        found = self.version(name, version)
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)
            if found.run_id:
                self.client.set_tag(found.run_id, key, value)

    def version_info(self, name: str, version: str) -> dict:
        """What a person asks of a served version: tags that matter and its test metrics."""
        found = self.version(name, version)
        metrics = self.client.get_run(found.run_id).data.metrics if found.run_id else {}
        return {
            "name": name,
            "version": str(version),
            "run_id": found.run_id,
            **{key: found.tags.get(key) for key in VERSION_INFO_TAGS},
            "metrics": {
                k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")
            },
        }
