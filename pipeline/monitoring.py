"""Monitoring steps: champion batch inference with an inference log, and the drift check.

The inference log is append-only: each batch is a new Parquet object under
`inference-log/date=YYYY-MM-DD/`, one row per scored image with its drift features.
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from pipeline import registry
from pipeline.drift import DriftResult, check_drift
from pipeline.features import Projection, feature_table
from pipeline.images import inspect_image
from pipeline.ingest import IMAGE_SUFFIXES
from pipeline.scoring import embedding_model, score_images
from pipeline.settings import Settings
from pipeline.storage import ObjectStore, sha256_hex

LOG_PREFIX = "inference-log"
MONITORED_MODEL = registry.MODEL_NAMES["resnet"]


@dataclass
class Champion:
    name: str
    version: str
    run_id: str
    threshold: float
    model: object
    projection: Projection | None  # None: a version registered without a reference profile
    reference: pd.DataFrame
    info: dict = field(default_factory=dict)
    probe: object = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.probe = embedding_model(self.model)


def load_champion(cache_dir: Path, name: str = MONITORED_MODEL) -> Champion:
    """The model behind `name@champion`, resolved now, with its threshold and reference profile."""
    current = registry.champion_version(name)
    if current is None:
        raise registry.RegistryError(
            f"model {name!r} has no champion yet: train and promote one first"
        )
    version = str(current.version)
    projection, reference = None, pd.DataFrame()
    try:
        folder = registry.download_reference(current.run_id, cache_dir / f"{name}-v{version}")
        projection = Projection.from_json(json.loads((folder / "projection.json").read_text()))
        reference = pd.read_parquet(folder / "features.parquet")
    except OSError:
        pass  # serving and batch inference still work; the drift check says what is missing
    return Champion(
        name=name,
        version=version,
        run_id=current.run_id,
        threshold=float(current.tags.get("threshold", 0.5)),
        model=registry.load_version(name, version),
        projection=projection,
        reference=reference,
        info=registry.version_info(name, version),
    )


def read_images(source: str, store: ObjectStore) -> list[tuple[str, bytes]]:
    """(name, bytes) for every image file under a local folder, else under a store prefix."""
    folder = Path(source)
    if folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        return [(p.relative_to(folder).as_posix(), p.read_bytes()) for p in files]
    if folder.exists():
        return [(folder.name, folder.read_bytes())]
    keys = store.list(source)
    if not keys:
        raise FileNotFoundError(
            f"{source!r} is neither a folder nor a non-empty object-store prefix"
        )
    return [(key, store.get(key)) for key in keys]


def predict_batch(
    champion: Champion, items: list[tuple[str, bytes]], max_pixels: int, now: datetime | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions with drift features, rejected images with the reason) for a batch."""
    now = now or datetime.now(UTC)
    good, rejected = [], []
    for name, data in items:
        suffix = Path(name).suffix.lower()
        issue = None if suffix in IMAGE_SUFFIXES else f"unsupported file extension {suffix!r}"
        issue = issue or inspect_image(data, max_pixels).issue
        (rejected.append({"image": name, "issue": issue}) if issue else good.append((name, data)))
    images = [data for _, data in good]
    probabilities, embeddings = score_images(champion.probe, images)
    features = (
        feature_table(images, embeddings, probabilities, champion.projection)
        if good
        else pd.DataFrame()
    )
    predictions = pd.DataFrame(
        {
            "image": [name for name, _ in good],
            "sha256": [sha256_hex(data) for data in images],
            "probability": probabilities,
            "label": ["PNEUMONIA" if p >= champion.threshold else "NORMAL" for p in probabilities],
            "threshold": champion.threshold,
            "model_name": champion.name,
            "model_version": champion.version,
            "timestamp": pd.Timestamp(now),
        }
    )
    if good:
        predictions = pd.concat([predictions, features.drop(columns=["probability"])], axis=1)
    return predictions, pd.DataFrame(rejected, columns=["image", "issue"])


def append_inference_log(
    store: ObjectStore, predictions: pd.DataFrame, now: datetime | None = None
) -> str | None:
    """Write a batch as a new object in today's partition; returns its key (None if empty)."""
    if predictions.empty:
        return None
    now = now or datetime.now(UTC)
    buffer = io.BytesIO()
    predictions.to_parquet(buffer, index=False)
    data = buffer.getvalue()
    key = f"{LOG_PREFIX}/date={now:%Y-%m-%d}/{now:%H%M%S%f}-{sha256_hex(data)[:12]}.parquet"
    store.put(key, data)
    return key


def read_inference_log(
    store: ObjectStore,
    model_version: str | None = None,
    days: int | None = None,
    last_n: int | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Logged predictions, newest last, optionally of one model version and a time window."""
    now = now or datetime.now(UTC)
    keys = store.list(f"{LOG_PREFIX}/")
    if days is not None:
        first = (now - timedelta(days=days)).strftime("%Y-%m-%d")
        keys = [k for k in keys if k.split("date=")[1][:10] >= first]
    if not keys:
        return pd.DataFrame()
    frame = pd.concat([pd.read_parquet(io.BytesIO(store.get(k))) for k in keys], ignore_index=True)
    if model_version is not None:
        frame = frame[frame["model_version"].astype(str) == str(model_version)]
    if days is not None:
        frame = frame[frame["timestamp"] >= pd.Timestamp(now - timedelta(days=days))]
    frame = frame.sort_values("timestamp", kind="stable")
    return frame.tail(last_n) if last_n else frame


@dataclass(frozen=True)
class DriftCheck:
    result: DriftResult
    champion_version: str
    report_uri: str | None
    summary: dict


def run_drift_check(
    store: ObjectStore, settings: Settings, now: datetime | None = None
) -> DriftCheck:
    """Reference of the current champion vs the window of its logged predictions."""
    now = now or datetime.now(UTC)
    champion = load_champion(settings.home / "cache" / "champions")
    if champion.reference.empty:
        raise registry.RegistryError(
            f"{champion.name} v{champion.version} has no reference profile (registered before "
            "drift monitoring existed): retrain it (`pneumo retrain`) to get one"
        )
    cfg = settings.drift
    current = read_inference_log(store, champion.version, cfg.days, cfg.last_n, now)
    result = check_drift(champion.reference, current, cfg)
    summary = {
        **result.summary(cfg.rule),
        "model": champion.name,
        "model_version": champion.version,
        "checked_at": now.isoformat(timespec="seconds"),
    }
    report_uri = None
    if result.html is not None:
        stem = f"reports/drift/{now:%Y%m%dT%H%M%S}-v{champion.version}"
        store.put(f"{stem}.html", result.html.encode())
        store.put(f"{stem}.json", json.dumps(summary, indent=2).encode())
        report_uri = store.uri(f"{stem}.html")
        with tempfile.TemporaryDirectory() as tmp:
            for suffix, content in (
                (".html", result.html),
                (".json", json.dumps(summary, indent=2)),
            ):
                path = Path(tmp) / f"drift-{now:%Y%m%dT%H%M%S}{suffix}"
                path.write_text(content)
                registry.log_run_artifact(champion.run_id, path, "drift")
        summary["report_uri"] = report_uri
    return DriftCheck(result, champion.version, report_uri, summary)


def reference_profile(model, paths: list[str]) -> tuple[pd.DataFrame, Projection]:
    """Drift features of the training images, with the PCA fitted on their embeddings."""
    from pipeline.features import fit_projection

    images = [Path(p).read_bytes() for p in paths]
    probabilities, embeddings = score_images(embedding_model(model), images)
    projection = fit_projection(embeddings)
    return feature_table(images, embeddings, probabilities, projection), projection
