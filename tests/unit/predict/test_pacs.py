"""The PACS sync's steps without a PACS: where a sync starts, what it selects, what it records,
and the result objects it builds (read back with pydicom)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipeline.adapters.dicom_results import FilmResult, build_overlay, build_report
from pipeline.adapters.dicomweb import PacsInstance
from pipeline.adapters.storage import LocalStore
from pipeline.predict.pacs import (
    DONE_PREFIX,
    SyncSummary,
    plan_sync,
    read_watermark,
    search_start,
    write_watermark,
)
from pipeline.settings import Settings
from tests.conftest import SAMPLE
from tests.dicom import PHI, gray_film, make_dicom

RESULT = FilmResult(0.8765432, "PNEUMONIA", 0.61, "pneumonia-resnet", "7", "imagenet", "aid")
NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def film() -> bytes:
    xray = sorted((SAMPLE / "train" / "PNEUMONIA").glob("*.jpeg"))[0]
    return make_dicom(gray_film(xray).astype(np.uint16) * 16, bits_stored=12)


def test_a_sync_starts_at_since_else_lookback_days_before_the_last_complete_sync() -> None:
    last = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert search_start(last, None, 2, NOW) == date(2026, 11, 28)
    assert search_start(None, None, 2, NOW) == date(2026, 12, 5)  # first sync
    assert search_start(last, date(2024, 1, 1), 2, NOW) == date(2024, 1, 1)


def test_the_watermark_round_trips_through_the_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert read_watermark(store) is None
    write_watermark(store, NOW)
    write_watermark(store, NOW.replace(hour=10))  # moved on by the next complete sync
    assert read_watermark(store) == NOW.replace(hour=10)


def instance(uid: str, modality: str = "DX", body_part: str = "CHEST") -> PacsInstance:
    return PacsInstance("1.2.3", "1.2.3.4", uid, modality, body_part)


def test_planning_skips_what_is_done_resumes_what_was_scored_and_records_what_is_not_selected(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    found = [instance("1.1"), instance("1.2", body_part=""), instance("1.3", body_part="HAND")]
    pending, summary = plan_sync(found, store, Settings(home=tmp_path), "secret")
    assert [i.sop_uid for i in pending.to_score] == ["1.1", "1.2"] and pending.to_store == []
    assert summary.found == 3 and summary.not_scored == {"not selected: BodyPartExamined HAND": 1}
    # The store holds keys, never the UIDs.
    assert all("1.3" not in key for key in store.list(DONE_PREFIX))
    assert len(store.list(DONE_PREFIX)) == 1
    key = pending.keys["1.1"]
    store.put(f"pacs/scored/{key}.json", b"{}")  # scored by a sync that was killed then
    again, summary = plan_sync(found, store, Settings(home=tmp_path), "secret")
    assert [i.sop_uid for i in again.to_score] == ["1.2"]
    assert [i.sop_uid for i in again.to_store] == ["1.1"]
    assert summary.already_done == 1 and summary.not_scored == {}


def test_summaries_of_a_syncs_steps_add_up() -> None:
    total = SyncSummary(since="2024-01-01", found=3, not_scored={"a": 1})
    total.add(SyncSummary(scored=2, reports=2, overlays=1, not_scored={"a": 1, "b": 2}))
    assert (total.found, total.scored, total.reports, total.overlays) == (3, 2, 2, 1)
    assert total.not_scored == {"a": 2, "b": 2} and total.since == "2024-01-01"


def content(report: pydicom.Dataset) -> dict:
    return {item.ConceptNameCodeSequence[0].CodeMeaning: item for item in report.ContentSequence}


def test_the_report_states_the_result_refers_to_the_film_and_is_filed_with_it(film: bytes) -> None:
    report = pydicom.dcmread(io.BytesIO(build_report(film, RESULT)))
    source = pydicom.dcmread(io.BytesIO(film))
    items = content(report)
    assert report.SOPClassUID.name == "Comprehensive SR Storage" and report.Modality == "SR"
    value = items["Probability of pneumonia"].MeasuredValueSequence[0].NumericValue
    assert float(value) == pytest.approx(RESULT.probability, abs=1e-6)
    assert items["Finding"].ConceptCodeSequence[0].CodeMeaning == "Pneumonia"
    assert (
        items["Algorithm Version"].TextValue == "7"
        and items["Model weights"].TextValue == "imagenet"
    )
    referenced = items["Source of Measurement"].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
    # The patient and study modules come from the film: the PACS files the report beside it.
    assert (report.PatientID, report.PatientName) == (PHI["PatientID"], PHI["PatientName"])
    assert report.StudyInstanceUID == source.StudyInstanceUID
    assert report.SeriesInstanceUID != source.SeriesInstanceUID
    # The same film always gives the same report UID: storing it again adds nothing.
    again = pydicom.dcmread(io.BytesIO(build_report(film, RESULT)))
    assert again.SOPInstanceUID == report.SOPInstanceUID != source.SOPInstanceUID


def test_the_overlay_is_a_derived_secondary_capture_marked_not_for_diagnosis(film: bytes) -> None:
    rgb = np.zeros((40, 30, 3), np.uint8)
    rgb[..., 0] = 200
    capture = pydicom.dcmread(io.BytesIO(build_overlay(film, rgb)))
    assert capture.SOPClassUID.name == "Secondary Capture Image Storage"
    assert list(capture.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "not for diagnosis" in capture.ImageComments
    assert capture.pixel_array.shape == (40, 30, 3) and capture.pixel_array[0, 0, 0] == 200
    assert capture.StudyInstanceUID == pydicom.dcmread(io.BytesIO(film)).StudyInstanceUID


def test_the_pacs_session_authenticates_one_way_and_a_missing_url_is_named() -> None:
    from pydantic import SecretStr, ValidationError

    from pipeline.adapters.dicomweb import Pacs, PacsError
    from pipeline.settings import PacsConfig

    token = Pacs(PacsConfig(url="https://pacs.invalid/dicom-web", token=SecretStr("t0ken-abc")))
    assert token.client._session.headers["Authorization"] == "Bearer t0ken-abc"
    # Every request bounded, tried once (the flow's tasks retry what is transient).
    assert token.client._timeout == 60.0 and token.client._max_attempts == 1
    basic = Pacs(PacsConfig(url="https://pacs.invalid/dicom-web/", username="u",
                            password=SecretStr("pw-1234")))  # fmt: skip
    assert basic.client._session.auth == ("u", "pw-1234") and basic.url.endswith("/dicom-web")
    with pytest.raises(PacsError, match="PNEUMO_PACS__URL"):
        Pacs(PacsConfig())
    with pytest.raises(ValidationError, match="set one"):
        PacsConfig(url="x", username="u", token=SecretStr("t0ken-abc"))
