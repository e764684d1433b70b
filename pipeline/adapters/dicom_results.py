"""Result objects for the PACS, through highdicom: the one module that builds DICOM objects.

A scored film gets a Comprehensive SR (probability, label at the served threshold, the model,
its weights and intended use, a reference to the film) and, if asked, a Secondary Capture of
the film under its Grad-CAM overlay, marked derived and not for diagnosis. Both copy the film's
patient and study modules, so the PACS files them beside it; they go nowhere but the PACS.

UIDs are derived from the film's (a hash: the same film always gives the same result UIDs), so
storing a result again after a crash stores nothing new.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

MANUFACTURER = "pneumo-ops"
SCHEME = "99PNEUMO"  # private coding scheme of pneumo-ops' own concepts
RESULT = hd.sr.CodedConcept("PNEUMO-RESULT", SCHEME, "Pneumonia screening aid result")
PROBABILITY = hd.sr.CodedConcept("PNEUMO-P", SCHEME, "Probability of pneumonia")
THRESHOLD = hd.sr.CodedConcept("PNEUMO-T", SCHEME, "Decision threshold")
WEIGHTS = hd.sr.CodedConcept("PNEUMO-W", SCHEME, "Model weights")
INTENDED_USE = hd.sr.CodedConcept("PNEUMO-U", SCHEME, "Intended use")
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
FINDINGS = {
    "PNEUMONIA": hd.sr.CodedConcept("233604007", "SCT", "Pneumonia"),
    "NORMAL": hd.sr.CodedConcept("17621005", "SCT", "Normal"),
}
# Series numbers of the result series (one SR series and one SC series per scored series).
SR_SERIES, SC_SERIES = 9901, 9902
NOT_FOR_DIAGNOSIS = "pneumo-ops AI result: screening aid, not for diagnosis"


@dataclass(frozen=True)
class FilmResult:
    """What the SR states about one film."""

    probability: float
    label: str  # "PNEUMONIA" or "NORMAL", at `threshold`
    threshold: float
    model_name: str
    model_version: str
    weights: str  # where the version's ResNet weights came from
    intended_use: str


def derived_uid(source_uid: str, what: str) -> str:
    """A UID that is a function of `source_uid` and `what` (sr, sc, sr-series, sc-series)."""
    return generate_uid(entropy_srcs=[MANUFACTURER, what, source_uid])


# Type 2 attributes of the patient and study modules: a result must carry them, empty where the
# film has none (highdicom reads each).
PATIENT_AND_STUDY = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip


def _film(source: bytes) -> pydicom.Dataset:
    film = pydicom.dcmread(io.BytesIO(source))
    for keyword in PATIENT_AND_STUDY:
        if keyword not in film:
            setattr(film, keyword, "")
    return film


def _part10(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def build_report(source: bytes, result: FilmResult) -> bytes:
    """The Comprehensive SR for the film `source` (Part 10 bytes), as Part 10 bytes."""
    film = _film(source)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid(result.model_name, f"device-{result.model_version}"),
            name=f"{result.model_name} v{result.model_version}",
            manufacturer_name=MANUFACTURER,
            model_name=result.model_name,
        ),
    )
    rel = {"relationship_type": hd.sr.RelationshipTypeValues.CONTAINS}
    items = [
        *observer,
        hd.sr.NumContentItem(PROBABILITY, round(result.probability, 6), NO_UNITS, **rel),
        hd.sr.CodeContentItem(codes.DCM.Finding, FINDINGS[result.label], **rel),
        hd.sr.NumContentItem(THRESHOLD, round(result.threshold, 6), NO_UNITS, **rel),
        hd.sr.TextContentItem(codes.DCM.AlgorithmName, result.model_name, **rel),
        hd.sr.TextContentItem(codes.DCM.AlgorithmVersion, result.model_version, **rel),
        hd.sr.TextContentItem(WEIGHTS, result.weights, **rel),
        hd.sr.TextContentItem(INTENDED_USE, result.intended_use, **rel),
        hd.sr.ImageContentItem(
            codes.DCM.SourceOfMeasurement, film.SOPClassUID, film.SOPInstanceUID, **rel
        ),
    ]
    root = hd.sr.ContainerContentItem(RESULT)
    root.ContentSequence = hd.sr.ContentSequence(items)
    report = hd.sr.ComprehensiveSR(
        evidence=[film],
        content=root,
        series_instance_uid=derived_uid(film.SeriesInstanceUID, "sr-series"),
        series_number=SR_SERIES,
        sop_instance_uid=derived_uid(film.SOPInstanceUID, "sr"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=NOT_FOR_DIAGNOSIS,
    )
    return _part10(report)


def build_overlay(source: bytes, rgb: np.ndarray) -> bytes:
    """A Secondary Capture of `rgb` (uint8, the film under its Grad-CAM map), derived from the
    film `source`, as Part 10 bytes."""
    film = _film(source)
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=film,
        pixel_array=np.ascontiguousarray(rgb, dtype=np.uint8),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=derived_uid(film.SeriesInstanceUID, "sc-series"),
        sop_instance_uid=derived_uid(film.SOPInstanceUID, "sc"),
        series_number=SC_SERIES,
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"),
        series_description="pneumo-ops Grad-CAM overlay: not for diagnosis",
    )
    capture.ImageType = ["DERIVED", "SECONDARY"]
    capture.BurnedInAnnotation = "YES"
    capture.ImageComments = NOT_FOR_DIAGNOSIS
    capture.RecognizableVisualFeatures = "NO"
    return _part10(capture)
