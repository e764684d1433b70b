"""DICOM films made in the tests from real X-rays, with patient data in many tags.

`make_dicom` writes what modalities send (`benchmarks.dicom_films.dx_film`: bit depth, LUTs,
MONOCHROME1 or 2, raw or JPEG-compressed) and fills every identifying tag of `PHI`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.dicom_films import dx_film

# Identifying values no output may contain (each is searched for verbatim).
PHI = {
    "PatientName": "DOE^JANE^QUINN",
    "PatientID": "MRN-83745291",
    "PatientBirthDate": "20190314",
    "PatientAddress": "12 Elmwood Lane Springfield",
    "OtherPatientIDs": "ALT-55501234",
    "AccessionNumber": "ACC99887766",
    "StudyDate": "20240102",
    "InstitutionName": "Saint Example Childrens Hospital",
    "ReferringPhysicianName": "SMITHSON^JOHN",
    "StudyID": "STUDY-4411",
}


def gray_film(path: Path, side: int = 96) -> np.ndarray:
    """A real X-ray as 8-bit gray, `side` px square."""
    return np.asarray(Image.open(path).convert("L").resize((side, side), Image.BILINEAR))


def make_dicom(
    stored: np.ndarray,
    *,
    patient_id: str = PHI["PatientID"],
    tags: dict[str, str] | None = None,
    **rendering: Any,
) -> bytes:
    """`benchmarks.dicom_films.dx_film` with every PHI tag filled; `tags` set (or replace)
    others, e.g. Modality or ViewPosition; `rendering`: bits_stored, photometric, slope,
    intercept, window, voi_lut, jpeg_from."""
    return dx_film(stored, tags={**PHI, "PatientID": patient_id, **(tags or {})}, **rendering)
