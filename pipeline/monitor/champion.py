"""The monitored champion as batch inference, serving and the drift check need it.

Resolved from the registry at call time, with its tuned threshold, its reference profile and a
scoring probe built once per version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.adapters.registry import MODEL_NAMES, Registry, RegistryError
from pipeline.monitor.drift_features import Projection
from pipeline.monitor.probe import embedding_model

MONITORED_MODEL = MODEL_NAMES["resnet"]


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


def load_champion(registry: Registry, cache_dir: Path, name: str = MONITORED_MODEL) -> Champion:
    """The model behind `name@champion`, resolved now, with its threshold and reference profile."""
    current = registry.champion_version(name)
    if current is None:
        raise RegistryError(f"model {name!r} has no champion yet: train and promote one first")
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
