"""The monitored champion as batch inference, serving and the drift check need it.

Resolved from the registry at call time, with its tuned threshold, its reference profile and a
scoring probe built once per version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.adapters.registry import (
    CHAMPION,
    MODEL_NAMES,
    Registry,
    RegistryError,
    threshold_of,
)
from pipeline.data.scope import ScopeModel
from pipeline.predict.drift_features import Projection
from pipeline.predict.probe import embedding_model
from pipeline.train.card import read_stored_card

MONITORED_MODEL = MODEL_NAMES["resnet"]


@dataclass
class Champion:
    name: str
    version: str
    run_id: str
    threshold: float
    model: object
    projection: Projection
    reference: pd.DataFrame
    scope: ScopeModel | None = None  # the intended-use distance (`pipeline.data.scope`)
    info: dict = field(default_factory=dict)
    # The version's model card {"html": ..., "md": ...}; empty for versions registered before
    # cards existed.
    card: dict[str, str] = field(default_factory=dict)
    probe: object = field(init=False, repr=False)
    revision: str = ""  # `revision_of` the registry version it was loaded from
    alias: str = CHAMPION  # which alias it was loaded as: its log rows say it

    def __post_init__(self) -> None:
        self.probe = embedding_model(self.model)


def load_champion(
    registry: Registry,
    cache_dir: Path,
    name: str = MONITORED_MODEL,
    version: str | None = None,
    alias: str = CHAMPION,
) -> Champion:
    """The model behind `name@alias` (default `champion`), resolved now (or `version`, pinned:
    the shards of one batch job are all scored by the version it started with), with its
    threshold and reference profile."""
    current = registry.version(name, version) if version else registry.require_alias(name, alias)
    version = str(current.version)
    # An incomplete champion (no threshold, no reference profile) is refused, not served with
    # defaults: `pneumo doctor` finds such versions and `pneumo rollback` moves past them.
    registry.require_complete(name, version)
    try:
        folder = registry.download_reference(current.run_id, cache_dir / f"{name}-v{version}")
        projection = Projection.from_json(json.loads((folder / "projection.json").read_text()))
        reference = pd.read_parquet(folder / "features.parquet")
        # Versions registered before the intended-use check have no distance: only the
        # image checks apply to them.
        scope_file = folder / "scope.json"
        scope = (
            ScopeModel.from_json(json.loads(scope_file.read_text()))
            if scope_file.exists()
            else None
        )
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{name} v{version}: reference profile unreadable: {exc}") from None
    return Champion(
        name=name,
        version=version,
        run_id=current.run_id,
        threshold=threshold_of(current),
        model=registry.load_version(name, version),
        projection=projection,
        reference=reference,
        scope=scope,
        info=registry.version_info(name, version),
        card=read_card(registry, current.run_id),
        revision=revision_of(current),
        alias=alias,
    )


def revision_of(version: Any) -> str:
    """Which version, at which threshold: a site acceptance changes the threshold in force
    without a new version, and whoever holds a loaded champion must notice."""
    return f"{version.version}/{version.tags.get('site_acceptance_id', 'validation')}"


def read_card(registry: Registry, run_id: str) -> dict[str, str]:
    """The model card's HTML and Markdown, or {} if the version has none."""
    try:
        return {kind: read_stored_card(registry, run_id, kind) for kind in ("html", "md")}
    except FileNotFoundError:
        return {}
