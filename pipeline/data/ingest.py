"""Ingest a Kaggle-layout folder of chest X-rays into the object store and describe every file.

Layout: `ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*` (or `ROOT/chest_xray/...`). Files are read
one at a time by a small thread pool, so memory stays flat whatever the dataset size. Only
regular files inside the root are read: links and special files, and files that cannot be read,
get a manifest row with the reason (quarantined, nothing stored) and the ingest goes on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from pipeline.adapters.storage import ObjectStore, put_content_addressed, sha256_hex
from pipeline.data.dicom import DicomError, is_dicom, patient_key, render_dicom
from pipeline.data.images import SUFFIX, inspect_image
from pipeline.data.scope import OUTSIDE_USE, tag_reasons
from pipeline.errors import PneumoError
from pipeline.files import listed_entries, read_listed
from pipeline.progress import Progress, silent
from pipeline.settings import IngestConfig, ScopeConfig

LABELS = ("NORMAL", "PNEUMONIA")
SPLITS = ("train", "val", "test")
RAW_PREFIX = "raw"

# Kermany file names: person1_bacteria_1.jpeg, IM-0115-0001.jpeg, NORMAL2-IM-0588-0001.jpeg.
_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^(NORMAL2-IM-\d+)-", re.IGNORECASE),
    re.compile(r"^(IM-\d+)-", re.IGNORECASE),
)

MANIFEST_COLUMNS = (
    "path", "key", "label", "source_split", "split", "patient_id", "subtype", "sha256", "bytes",
    "decodable", "issue", "quarantined", "width", "height", "mode", "channels", "bit_depth",
    "mean", "std", "original_key", "origin",
)  # fmt: skip
# `origin`: "dataset" for an ingested dataset, "labeled" for films labelled later and merged in
# (`pneumo retrain --labeled`, the labelled inbox): the films of the new kind, which training
# weighs up (pipeline.train.inputs) and of which a share only judges (split "site").
ORIGINS = ("dataset", "labeled")
# Resolves the secret that keys DICOM patients, only when a DICOM film comes.
Secret = Callable[[], str]


def no_secret() -> str:
    return ""


# DICOM films: the original stays byte-identical under raw/ (`original_key`); the rendered 8-bit
# PNG the models read is stored under rendered/ and is the row's `key`, `sha256` and `bytes`.
RENDERED_PREFIX = "rendered"


class IngestError(PneumoError, ValueError):
    """The input folder does not have the expected layout."""


# Kermany's `personN` numbering restarts in each official split (170 ids occur in both train and
# test), so a name-derived id means one patient only within one numbering. A flat folder
# (`DIR/{NORMAL,PNEUMONIA}/`: a site's labelled films) is its own numbering: its ids get this
# scope and never match a dataset patient. The Kaggle layout keeps the dataset's numbering.
LOCAL_PATIENT_SCOPE = "local"


@dataclass(frozen=True)
class SourceFile:
    path: Path
    relative: str
    label: str
    source_split: str
    patient_scope: str = ""


def parse_patient_id(file_name: str, scope: str = "") -> str:
    """Patient id from a Kermany file name; the file stem when the name follows no known rule.

    Falling back to the stem treats an unknown file as its own patient, which can only make
    grouping stricter, never leak a known patient across splits. A `scope` names the numbering
    the id belongs to (see LOCAL_PATIENT_SCOPE).
    """
    prefix = f"{scope}:" if scope else ""
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(file_name)
        if match:
            return prefix + match.group(1)
    return prefix + Path(file_name).stem


def parse_subtype(file_name: str, label: str) -> str:
    """normal / bacteria / virus from the label and the file name."""
    if label == "NORMAL":
        return "normal"
    lowered = file_name.lower()
    for subtype in ("bacteria", "virus"):
        if subtype in lowered:
            return subtype
    return "unknown"


def resolve_dataset_root(path: Path) -> Path:
    """The folder that holds the split folders (PATH itself or PATH/chest_xray), or the label
    folders of a flat layout (a site's labelled films: `PATH/{NORMAL,PNEUMONIA}/`)."""
    if not path.is_dir():
        raise IngestError(f"input folder {path} does not exist or is not a folder")
    for candidate in (path, path / "chest_xray"):
        if any((candidate / split).is_dir() for split in SPLITS):
            return candidate
    if is_flat_layout(path):
        return path
    raise IngestError(
        f"input folder {path} has no split folders: expected {'/'.join(SPLITS)} inside it "
        f"or inside its chest_xray/ folder, or {'/'.join(LABELS)} folders"
    )


def is_flat_layout(root: Path) -> bool:
    """Label folders right under ROOT and no split folders."""
    has_labels = any((root / label).is_dir() for label in LABELS)
    return has_labels and not any((root / split).is_dir() for split in SPLITS)


def discover_files(root: Path) -> list[SourceFile]:
    """Every non-hidden file under ROOT/split/label (or ROOT/label: source split train), in a
    stable order."""
    found: list[SourceFile] = []
    for split in SPLITS:
        split_dir, scope = root / split, ""
        if split == "train" and is_flat_layout(root):
            # The label folders sit right here; they count as training films, numbered apart.
            split_dir, scope = root, LOCAL_PATIENT_SCOPE
        if not split_dir.is_dir():
            continue
        for label_dir in sorted(p for p in split_dir.iterdir() if not p.name.startswith(".")):
            if label_dir.is_symlink() or split_dir.is_symlink():
                raise IngestError(
                    f"{label_dir if label_dir.is_symlink() else split_dir} is a symbolic link: "
                    "ingest reads only folders and files inside the input folder"
                )
            if not label_dir.is_dir():
                continue
            if label_dir.name not in LABELS:
                raise IngestError(
                    f"unknown label folder {label_dir}: expected one of {', '.join(LABELS)}"
                )
            found.extend(_files_in(label_dir, root, label_dir.name, split, scope))
    if not found:
        raise IngestError(f"no files found under {root}/{{{','.join(SPLITS)}}}/{{label}}/")
    return found


def _files_in(
    label_dir: Path, root: Path, label: str, split: str, scope: str
) -> Iterable[SourceFile]:
    for path in listed_entries(label_dir):
        yield SourceFile(path, path.relative_to(root).as_posix(), label, split, scope)


def describe_and_store(
    source: SourceFile,
    store: ObjectStore,
    cfg: IngestConfig,
    patient_secret: Secret = no_secret,
    scope_cfg: ScopeConfig | None = None,
) -> dict:
    """Hash, inspect and store one file; returns its manifest row plus whether it was new."""
    name = source.path.name
    row = {
        "path": source.relative,
        "label": source.label,
        "source_split": source.source_split,
        "patient_id": parse_patient_id(name, source.patient_scope),
        "subtype": parse_subtype(name, source.label),
    }
    data, unread = read_listed(source.path)
    if data is None:  # nothing read, so nothing stored: the row says why
        return {**row, "bytes": 0, "decodable": False, "issue": unread, "quarantined": True,
                "_new": False}  # fmt: skip
    if is_dicom(data):
        return describe_dicom(row, data, store, cfg, patient_secret, scope_cfg or ScopeConfig())
    info = asdict(inspect_image(data, cfg.max_pixels))
    # Bad files are stored too: the quarantine report points at the exact bytes received.
    suffix = SUFFIX.get(info.pop("format"), source.path.suffix.lower())
    key, is_new = put_content_addressed(store, data, RAW_PREFIX, suffix)
    return {
        **row,
        "key": key,
        "sha256": sha256_hex(data),
        "bytes": len(data),
        **info,
        "quarantined": info["issue"] is not None,
        "_new": is_new,
    }


def describe_dicom(
    row: dict,
    data: bytes,
    store: ObjectStore,
    cfg: IngestConfig,
    patient_secret: Secret,
    scope_cfg: ScopeConfig,
) -> dict:
    """A DICOM film: the original stored as received, the rendering stored for the models, the
    patient keyed by an HMAC of PatientID. A film its tags put outside the intended use
    (`tag_reasons`: a lateral view, CT, an adult) is quarantined: no model should learn from it.
    No other tag is read (see pipeline.data.dicom)."""
    original_key, is_new = put_content_addressed(store, data, RAW_PREFIX, ".dcm")
    try:
        film = render_dicom(data, cfg.max_pixels)
    except DicomError as exc:
        return {**row, "key": original_key, "original_key": original_key,
                "sha256": sha256_hex(data), "bytes": len(data), "decodable": False,
                "issue": f"DICOM: {exc}", "quarantined": True, "_new": is_new}  # fmt: skip
    info = asdict(inspect_image(film.png, cfg.max_pixels))
    info.pop("format")
    outside = tag_reasons(film.scope_tags, scope_cfg)
    if outside and info["issue"] is None:
        info["issue"] = OUTSIDE_USE + "; ".join(outside)
    key, _ = put_content_addressed(store, film.png, RENDERED_PREFIX, ".png")
    if film.patient_id:  # none given: the file name's rule, as for JPEG and PNG
        secret = patient_secret()
        if not secret:
            raise IngestError("DICOM films need a patient key secret (PNEUMO_PATIENT_KEY_SECRET)")
        row = {**row, "patient_id": patient_key(film.patient_id, secret)}
    return {
        **row,
        **info,
        "key": key,
        "original_key": original_key,
        "sha256": sha256_hex(film.png),
        "bytes": len(film.png),
        # The acquisition as sent (subgroups, drift): the rendering itself is always 8-bit L.
        "mode": f"DICOM {film.photometric}",
        "bit_depth": film.bits_stored,
        "quarantined": info["issue"] is not None,
        "_new": is_new,
    }


def film_identity(
    name: str, data: bytes, max_pixels: int, patient_secret: Secret, scope: str = ""
) -> tuple[str, str]:
    """(patient_id, sha256) as ingest would record them, without storing anything."""
    if is_dicom(data):
        try:
            film = render_dicom(data, max_pixels)
        except DicomError:
            return parse_patient_id(name, scope), sha256_hex(data)
        patient = patient_key(film.patient_id, patient_secret()) if film.patient_id else None
        return patient or parse_patient_id(name, scope), sha256_hex(film.png)
    return parse_patient_id(name, scope), sha256_hex(data)


@dataclass(frozen=True)
class IngestResult:
    manifest: pd.DataFrame
    stored: int
    already_stored: int


def ingest_folder(
    path: Path,
    store: ObjectStore,
    cfg: IngestConfig,
    progress: Progress = silent,
    patient_secret: Secret = no_secret,
    scope_cfg: ScopeConfig | None = None,
) -> IngestResult:
    """Store every file under `path` and return the manifest rows (no split assigned yet).

    `patient_secret` keys DICOM films' patients (`pipeline.data.dicom.patient_key`);
    `scope_cfg`: the intended-use rules DICOM films' tags are held to (defaults when None).
    """
    root = resolve_dataset_root(path)
    sources = discover_files(root)
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        rows = pool.map(
            lambda s: describe_and_store(s, store, cfg, patient_secret, scope_cfg), sources
        )
        collected = list(progress(rows, len(sources), "ingest"))
    frame = pd.DataFrame(collected)
    stored = int(frame.pop("_new").sum())
    frame["split"] = pd.NA
    frame["origin"] = ORIGINS[0]
    frame = frame.reindex(columns=list(MANIFEST_COLUMNS))
    return IngestResult(manifest=frame, stored=stored, already_stored=len(frame) - stored)
