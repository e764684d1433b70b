"""DICOM films, as hospitals send them, rendered to the 8-bit grayscale the models read.

Rendering follows the standard's pipeline: stored values (BitsStored honoured by pydicom), the
modality LUT (rescale slope and intercept), the VOI LUT (a LUT table, else the first window centre
and width, else the film's own value range), then MONOCHROME1 inverted so that air is dark as in
MONOCHROME2. Compressed transfer syntaxes are decoded by pydicom's plugins (pylibjpeg for JPEG).

Privacy: only pixels leave this module, plus the photometric interpretation, bits stored and
transfer syntax, and the four tags the intended-use check reads (`SCOPE_TAGS`: modality, body
part, view and age, which identify no one). The patient key is an HMAC of PatientID with a secret;
no other tag (names, dates, accession numbers, institution) is read out, so none can reach the
manifest, logs, MLflow, reports or the inference log.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.errors import PneumoError

GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
# What the intended-use check reads (`pipeline.data.scope.tag_reasons`), and nothing more.
SCOPE_TAGS = ("Modality", "BodyPartExamined", "ViewPosition", "PatientAge")


class DicomError(PneumoError, ValueError):
    """A DICOM file that cannot be rendered as one grayscale film; the message says why."""


@dataclass(frozen=True)
class RenderedFilm:
    png: bytes  # 8-bit grayscale PNG: what is stored for training and what the models read
    photometric: str
    bits_stored: int
    transfer_syntax: str
    patient_id: str  # raw PatientID: only for `patient_key`, never stored or logged
    scope_tags: dict[str, str]  # the `SCOPE_TAGS` present, for the intended-use check


def is_dicom(data: bytes) -> bool:
    """A DICOM Part 10 file: 128-byte preamble, then "DICM" (the content, not the name, tells)."""
    return data[128:132] == b"DICM"


def patient_key(patient_id: str, secret: str) -> str:
    """A stable, non-reversible patient key: HMAC-SHA256 of PatientID under `secret`.

    Plain hashing would not do: PatientIDs are short, so a hash of one is found by trying them
    all. Films of one patient get one key, so splits stay patient-disjoint.
    """
    return _keyed("dcm", patient_id, secret)


def instance_key(sop_instance_uid: str, secret: str) -> str:
    """A film's key in logs and the store in place of its SOP Instance UID, which links back to
    the patient in the PACS: an HMAC under the patient-key secret, as `patient_key`."""
    return _keyed("pacs", sop_instance_uid, secret)


def _keyed(prefix: str, value: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()
    return f"{prefix}-{digest[:20]}"


def read_dataset(data: bytes, max_pixels: int):
    """The parsed dataset of one single-frame grayscale film, or DicomError saying why not."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        raise DicomError(f"not a readable DICOM file: {exc}") from None
    if "PixelData" not in ds:
        raise DicomError("a DICOM file without pixel data (not an image)")
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * columns > max_pixels:
        raise DicomError(
            f"decompression bomb: {columns}x{rows} = {rows * columns} pixels > {max_pixels}"
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise DicomError(f"a multi-frame DICOM file ({frames} frames): one film per file expected")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in GRAYSCALE:
        raise DicomError(
            f"photometric interpretation {photometric or 'missing'}: expected MONOCHROME1 or "
            "MONOCHROME2 (a grayscale radiograph)"
        )
    return ds


def to_unit_range(ds, stored: np.ndarray) -> np.ndarray:
    """Stored values -> 0..1 display values through the modality and VOI LUTs."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(stored, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        # A table is indexed by whole values.
        indices = np.round(values).astype(np.int64)
        mapped = apply_voi_lut(indices, ds, index=0, prefer_lut=True).astype(np.float64)
        # The table's output range is set by its descriptor's bits per entry.
        low, high = 0.0, 2.0 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        centre, width = (
            float(np.atleast_1d(ds[t].value)[0]) for t in ("WindowCenter", "WindowWidth")
        )
        # The standard's linear function (PS3.3 C.11.2.1.2.1), to 0..1.
        mapped = (values - (centre - 0.5)) / max(width - 1, 1) + 0.5
        low, high = 0.0, 1.0
    else:  # no window given: the film's own range
        mapped, low, high = values, values.min(), values.max()
    return np.clip((mapped - low) / max(high - low, 1e-12), 0.0, 1.0)


def image_pixels(data: bytes, max_pixels: int) -> bytes:
    """The bytes a model reads: a DICOM film rendered to PNG (only its pixels go further, never
    a tag), anything else as it is. DicomError when a DICOM film cannot be rendered."""
    return film_pixels(data, max_pixels)[0]


def film_pixels(data: bytes, max_pixels: int) -> tuple[bytes, dict[str, str]]:
    """`image_pixels`, and the film's `SCOPE_TAGS` (none for a JPEG or PNG)."""
    if not is_dicom(data):
        return data, {}
    film = render_dicom(data, max_pixels)
    return film.png, film.scope_tags


def render_dicom(data: bytes, max_pixels: int) -> RenderedFilm:
    """The film as an 8-bit grayscale PNG (MONOCHROME1 inverted), with what ingest records."""
    ds = read_dataset(data, max_pixels)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    syntax_name = getattr(syntax, "name", str(syntax))
    try:
        stored = ds.pixel_array
    except Exception as exc:  # pydicom raises many kinds (missing plugin, corrupt stream)
        raise DicomError(f"pixel data not decodable ({syntax_name}): {exc}") from None
    if stored.ndim != 2:
        raise DicomError(f"pixel data of shape {stored.shape}: expected one grayscale frame")
    unit = to_unit_range(ds, stored)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        unit = 1.0 - unit
    buffer = io.BytesIO()
    Image.fromarray(np.round(unit * 255).astype(np.uint8), mode="L").save(buffer, "PNG")
    return RenderedFilm(
        png=buffer.getvalue(),
        photometric=str(ds.PhotometricInterpretation),
        bits_stored=int(ds.get("BitsStored", 8) or 8),
        transfer_syntax=syntax_name,
        patient_id=str(ds.get("PatientID", "") or ""),
        scope_tags={tag: str(ds.get(tag, "")).strip() for tag in SCOPE_TAGS if ds.get(tag)},
    )
