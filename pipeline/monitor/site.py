"""Site acceptance: a registered version measured on a hospital's own labelled films before
go-live, and the operating threshold chosen there.

Validation films come from the training period; a later period or another machine shifts the
scores (on the deployment site's films the val-chosen threshold kept sensitivity but gave
specificity 0.31-0.49). So the site's labelled films choose the threshold by the project's own
rule, the goal is checked on them, and the result is recorded on the version: from then on
every consumer of `threshold_of` (predict, batch-predict, the service, drift) uses it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.adapters.registry import Registry
from pipeline.clock import now_iso
from pipeline.data.ingest import LABELS, SPLITS, Secret, film_identity, no_secret
from pipeline.data.steps import patient_secret
from pipeline.errors import PneumoError
from pipeline.files import listed_entries, read_listed
from pipeline.predict.champion import Champion, load_champion
from pipeline.predict.scoring import predict_batch
from pipeline.settings import Settings, SiteConfig, ThresholdConfig
from pipeline.train.card import update_card
from pipeline.train.metrics import choose_threshold
from pipeline.train.uncertainty import (
    bootstrap_intervals,
    interval_columns,
    patient_groups,
    rate_metrics,
)

HISTORY_DIR = "site_acceptance"


class SiteFilmsError(PneumoError, ValueError):
    """A folder of labelled films that cannot be used as it is."""


@dataclass(frozen=True)
class LabelledFilms:
    """Labelled local films: one row per film (`name`, `label`, `patient_id`, `sha256`) and
    their bytes, in the same order."""

    rows: pd.DataFrame
    data: list[bytes]

    @property
    def labels(self) -> np.ndarray:
        return (self.rows["label"] == "PNEUMONIA").to_numpy(dtype=int)

    def subset(self, indices: np.ndarray) -> LabelledFilms:
        """The films at `indices`, in that order."""
        return LabelledFilms(
            self.rows.iloc[indices].reset_index(drop=True), [self.data[i] for i in indices]
        )

    @property
    def manifest_id(self) -> str:
        """A digest of which films, under which labels: the same films give the same id."""
        lines = sorted(f"{r.label}\t{r.sha256}" for r in self.rows.itertuples())
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def class_folders(folder: Path) -> list[Path]:
    """`DIR/{NORMAL,PNEUMONIA}/`, or each `DIR/<split>/{NORMAL,PNEUMONIA}/` (Kaggle layout)."""
    if not folder.is_dir():
        raise SiteFilmsError(f"labelled films {folder}: no such folder")
    roots = [folder] if any((folder / label).is_dir() for label in LABELS) else []
    roots += [folder / s for s in SPLITS if any((folder / s / lab).is_dir() for lab in LABELS)]
    if not roots:
        raise SiteFilmsError(
            f"labelled films {folder}: expected NORMAL/ and PNEUMONIA/ folders in it "
            f"(or {'/'.join(SPLITS)}/ folders holding them)"
        )
    return [root / label for root in roots for label in LABELS if (root / label).is_dir()]


def read_labelled_films(
    folder: Path, max_pixels: int, patient_secret: Secret = no_secret, both_classes: bool = True
) -> LabelledFilms:
    """Every film under the class folders, with its label, patient and content digest.

    Patients come from the file name (Kermany's rule) or a DICOM film's PatientID, as at ingest,
    so a patient's films stay together when they are resampled or split. Unreadable entries and
    a missing class (unless not `both_classes`: labels may arrive one class at a time) are
    errors naming the folder: acceptance on part of the films would silently measure something
    else.
    """
    rows, data = [], []
    for class_dir in class_folders(folder):
        for path in listed_entries(class_dir):
            content, reason = read_listed(path)
            name = path.relative_to(folder).as_posix()
            if content is None:
                raise SiteFilmsError(f"labelled films {folder}: {name}: {reason}")
            patient, digest = film_identity(path.name, content, max_pixels, patient_secret)
            rows.append({"name": name, "label": class_dir.name, "patient_id": patient,
                         "sha256": digest})  # fmt: skip
            data.append(content)
    frame = pd.DataFrame(rows, columns=["name", "label", "patient_id", "sha256"])
    missing = [label for label in LABELS if not (frame["label"] == label).any()]
    if frame.empty:
        raise SiteFilmsError(f"labelled films {folder}: no films in {', '.join(LABELS)}")
    if missing and both_classes:
        raise SiteFilmsError(
            f"labelled films {folder}: no {' or '.join(missing)} films; acceptance needs both "
            "classes"
        )
    return LabelledFilms(frame, data)


def patient_halves(films: LabelledFilms, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Film indices of two random halves of the patients (each patient's films together)."""
    groups = patient_groups(films.rows["patient_id"].astype(str).tolist())
    order = np.random.default_rng(seed).permutation(len(groups))
    half = len(groups) // 2
    return (
        np.sort(np.concatenate([groups[i] for i in order[:half]])),
        np.sort(np.concatenate([groups[i] for i in order[half:]])),
    )


def write_films(films: LabelledFilms, target: Path) -> Path:
    """`target/{NORMAL,PNEUMONIA}/` holding the films under their names, as a site would hand
    them over (names keep their class folder, so the label travels with each film)."""
    for name, data in zip(films.rows["name"], films.data, strict=True):
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return target


def goal_holds(metrics: dict[str, float], cfg: SiteConfig) -> bool:
    return (
        metrics["sensitivity"] >= cfg.goal_sensitivity
        and metrics["specificity"] >= cfg.goal_specificity
    )


def holdout_goal_share(
    labels: np.ndarray,
    scores: np.ndarray,
    patients: list[str],
    threshold_cfg: ThresholdConfig,
    site_cfg: SiteConfig,
) -> float:
    """Share of random patient halves in which a threshold chosen on one half meets the goal
    on the other: how often the rule holds on films it did not see (in-sample figures are
    optimistic, most of all on a few hundred films)."""
    groups = patient_groups(patients)
    rng = np.random.default_rng(site_cfg.seed)
    met = 0
    for _ in range(site_cfg.holdout_splits):
        order = rng.permutation(len(groups))
        half = len(groups) // 2
        fit = np.concatenate([groups[i] for i in order[:half]])
        check = np.concatenate([groups[i] for i in order[half:]])
        threshold, _ = choose_threshold(labels[fit], scores[fit], threshold_cfg)
        met += goal_holds(rate_metrics(labels[check], scores[check], threshold), site_cfg)
    return met / site_cfg.holdout_splits


@dataclass(frozen=True)
class SiteAcceptance:
    """One acceptance run: what was measured, the threshold chosen, the verdict, and who."""

    model: str
    version: str
    manifest_id: str
    films: dict[str, int]
    threshold: float
    rule: str
    previous_threshold: float
    metrics: dict[str, float]  # at `threshold`, with `*_ci_low`/`*_ci_high`
    at_previous: dict[str, float]  # the same films at `previous_threshold`
    holdout_goal_share: float
    goal: dict[str, float]
    accepted: bool
    at: str
    by: str
    reasons: list[str] = field(default_factory=list)

    @property
    def acceptance_id(self) -> str:
        return f"{self.at}-{self.manifest_id}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "acceptance_id": self.acceptance_id}

    def tags(self) -> dict[str, str]:
        """What the version carries: the threshold in force and where it came from."""
        return {
            "site_threshold": repr(float(self.threshold)),
            "site_acceptance_id": self.acceptance_id,
            "site_accepted": str(self.accepted).lower(),
            "site_manifest_id": self.manifest_id,
            "site_accepted_at": self.at,
            "site_accepted_by": self.by,
            "site_summary": (
                f"AUC {self.metrics['roc_auc']:.3f}, sensitivity "
                f"{self.metrics['sensitivity']:.3f}, specificity "
                f"{self.metrics['specificity']:.3f} on {self.films['films']} films"
            ),
        }


def measure_site(
    films: LabelledFilms,
    scores: np.ndarray,
    previous_threshold: float,
    threshold_cfg: ThresholdConfig,
    site_cfg: SiteConfig,
) -> tuple[float, str, dict[str, float], dict[str, float], float]:
    """(threshold, rule, metrics there with CIs, metrics at the previous threshold, hold-out
    share): the numbers an acceptance records."""
    labels = films.labels
    patients = films.rows["patient_id"].astype(str).tolist()
    threshold, rule = choose_threshold(labels, scores, threshold_cfg)
    rule = rule.replace("on val", "on the site's films")
    metrics = rate_metrics(labels, scores, threshold)
    metrics |= interval_columns(bootstrap_intervals(labels, scores, threshold, patients))
    previous = rate_metrics(labels, scores, previous_threshold)
    share = holdout_goal_share(labels, scores, patients, threshold_cfg, site_cfg)
    return threshold, rule, metrics, previous, share


def film_counts(films: LabelledFilms) -> dict[str, int]:
    labels = films.labels
    return {
        "films": len(labels),
        "patients": int(films.rows["patient_id"].nunique()),
        "NORMAL": int((labels == 0).sum()),
        "PNEUMONIA": int((labels == 1).sum()),
    }


def verdict(metrics: dict[str, float], share: float, cfg: SiteConfig) -> tuple[bool, list[str]]:
    """Accepted when the goal holds at the site threshold; the reasons say what was seen."""
    sens, spec = metrics["sensitivity"], metrics["specificity"]
    accepted = goal_holds(metrics, cfg)
    reasons = [
        f"sensitivity {sens:.3f} {'>=' if sens >= cfg.goal_sensitivity else '<'} "
        f"{cfg.goal_sensitivity:.2f}",
        f"specificity {spec:.3f} {'>=' if spec >= cfg.goal_specificity else '<'} "
        f"{cfg.goal_specificity:.2f}",
        f"on films the threshold did not see (patient halves): goal met in {share:.0%}",
    ]
    return accepted, reasons


def score_films(champion: Champion, films: LabelledFilms, max_pixels: int) -> np.ndarray:
    """The champion's probabilities for every film, in the films' order, scored as batch
    inference scores them (DICOM rendering, the model's own decode); a film it refuses is an
    error naming it."""
    names = films.rows["name"].tolist()
    predictions, rejected = predict_batch(champion, list(zip(names, films.data, strict=True)),
                                          max_pixels)  # fmt: skip
    if len(rejected):
        listed = "; ".join(f"{r.image}: {r.issue}" for r in rejected.head(5).itertuples())
        raise SiteFilmsError(f"{len(rejected)} labelled films could not be scored: {listed}")
    by_name = predictions.set_index("image")["probability"]
    return by_name.loc[names].to_numpy(dtype=float)


def accept_on_site(
    registry: Registry,
    settings: Settings,
    folder: Path,
    version: str | None = None,
    by: str = "unknown",
) -> SiteAcceptance:
    """Score the site's films with the champion (or `version`), choose and record the site's
    threshold, and re-render the version's card with its site validation.

    A re-run replaces the threshold in force; every acceptance stays in the run's
    `site_acceptance/` artifacts and in the card's history table.
    """
    films = read_labelled_films(
        folder, settings.ingest.max_pixels, functools.partial(patient_secret, settings)
    )
    champion = load_champion(registry, settings.cache_dir / "site", version=version)
    scores = score_films(champion, films, settings.ingest.max_pixels)
    threshold, rule, metrics, previous, share = measure_site(
        films, scores, champion.threshold, settings.threshold, settings.site
    )
    accepted, reasons = verdict(metrics, share, settings.site)
    result = SiteAcceptance(
        model=champion.name, version=champion.version, manifest_id=films.manifest_id,
        films=film_counts(films), threshold=threshold, rule=rule,
        previous_threshold=champion.threshold, metrics=metrics, at_previous=previous,
        holdout_goal_share=share,
        goal={"sensitivity": settings.site.goal_sensitivity,
              "specificity": settings.site.goal_specificity},
        accepted=accepted, at=now_iso(), by=by, reasons=reasons,
    )  # fmt: skip
    record_acceptance(registry, champion.run_id, result)
    return result


def record_acceptance(registry: Registry, run_id: str, result: SiteAcceptance) -> None:
    """The history entry first (an artifact of the run), then the card, then the tags that
    put the threshold in force: a crash part-way leaves the old threshold serving."""
    record = result.to_dict()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{result.acceptance_id.replace(':', '')}.json"
        path.write_text(json.dumps(record, indent=2, default=str))
        registry.log_run_artifact(run_id, path, HISTORY_DIR)

    def add_acceptance(card: dict) -> None:
        card["site_validation"] = [*card.get("site_validation", []), record]

    # A version registered before model cards existed: the tags and the history suffice.
    with contextlib.suppress(FileNotFoundError):
        update_card(registry, run_id, add_acceptance)
    registry.set_version_tags(result.model, result.version, result.tags())
