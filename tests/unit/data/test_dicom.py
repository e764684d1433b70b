"""DICOM rendering on films made from a real X-ray: LUTs, polarity, bit depths, compression."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.dicom import DicomError, film_pixels, is_dicom, patient_key, render_dicom
from tests.conftest import SAMPLE
from tests.dicom import gray_film, make_dicom

LIMIT = 10_000_000
XRAY = sorted((SAMPLE / "train" / "PNEUMONIA").glob("*.jpeg"))[0]


@pytest.fixture(scope="module")
def film() -> np.ndarray:
    return gray_film(XRAY)


def rendered(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(render_dicom(data, LIMIT).png)), dtype=float)


def stretched(gray: np.ndarray) -> np.ndarray:
    """The source over its own range: what a film without a window renders to."""
    g = gray.astype(float)
    return (g - g.min()) / (g.max() - g.min()) * 255


def test_12_bit_monochrome2_through_the_rescale(film: np.ndarray) -> None:
    data = make_dicom(film.astype(np.uint16) * 16, bits_stored=12, intercept=-1024)
    assert np.abs(rendered(data) - stretched(film)).max() <= 1


def test_bits_above_bits_stored_are_ignored(film: np.ndarray) -> None:
    # Bits 12-15 set (old overlay planes, or garbage): a 12-bit film must read the same.
    clean = make_dicom(film.astype(np.uint16) * 16, bits_stored=12)
    noisy = make_dicom((film.astype(np.uint16) * 16) | 0xF000, bits_stored=12)
    assert render_dicom(clean, LIMIT).png == render_dicom(noisy, LIMIT).png


def test_monochrome1_is_inverted_so_air_stays_dark(film: np.ndarray) -> None:
    stored = (255 - film.astype(np.uint16)) * 16
    data = make_dicom(stored, bits_stored=12, photometric="MONOCHROME1")
    assert np.abs(rendered(data) - stretched(film)).max() <= 1


def test_16_bit_with_a_window_over_the_full_range(film: np.ndarray) -> None:
    slope, intercept = 2.0, 100.0
    low, high = intercept, 255 * 257 * slope + intercept  # values of gray 0 and 255
    width = high - low + 1
    data = make_dicom(
        film.astype(np.uint16) * 257, bits_stored=16, slope=slope, intercept=intercept,
        window=(low + 0.5 + (width - 1) / 2, width),
    )  # fmt: skip
    assert np.abs(rendered(data) - film).max() <= 1


def test_a_narrow_window_clips_outside_it(film: np.ndarray) -> None:
    # Window over gray 64..192 only: darker films go black, brighter ones white.
    data = make_dicom(film.astype(np.uint16) * 16, bits_stored=12, window=(128 * 16, 128 * 16))
    out = rendered(data)
    assert out[film < 60].max() == 0 and out[film > 196].min() == 255


def test_a_voi_lut_table_is_applied(film: np.ndarray) -> None:
    lut = np.sqrt(np.arange(4096) / 4095) * 65535  # a non-linear display curve
    data = make_dicom(film.astype(np.uint16) * 16, bits_stored=12, voi_lut=lut)
    expected = np.sqrt(film.astype(float) * 16 / 4095) * 255
    assert np.abs(rendered(data) - expected).max() <= 1


def test_jpeg_compressed_films_decode(film: np.ndarray) -> None:
    data = make_dicom(film, bits_stored=8, jpeg_from=film)
    assert "JPEG Baseline" in render_dicom(data, LIMIT).transfer_syntax
    assert np.abs(rendered(data) - stretched(film)).mean() < 2


def test_only_pixels_and_acquisition_facts_come_out(film: np.ndarray) -> None:
    view = {"ViewPosition": "AP", "PatientAge": "004Y", "BodyPartExamined": "CHEST"}
    out = render_dicom(make_dicom(film.astype(np.uint16) * 16, bits_stored=12, tags=view), LIMIT)
    assert (out.photometric, out.bits_stored) == ("MONOCHROME2", 12)
    assert Image.open(io.BytesIO(out.png)).mode == "L"
    # The intended-use check's four tags and nothing else (make_dicom fills every PHI tag).
    assert out.scope_tags == {"Modality": "DX", **view}
    assert film_pixels(make_dicom(film, bits_stored=8), LIMIT)[1] == {"Modality": "DX"}
    assert film_pixels(XRAY.read_bytes(), LIMIT) == (XRAY.read_bytes(), {})


def test_the_patient_key_is_stable_and_needs_the_secret() -> None:
    assert patient_key("MRN-1", "s1") == patient_key("MRN-1", "s1")
    assert patient_key("MRN-1", "s1") != patient_key("MRN-1", "s2")
    assert "MRN-1" not in patient_key("MRN-1", "s1")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("frames", r"multi-frame DICOM file \(3 frames\)"),
        ("rgb", "photometric interpretation RGB: expected MONOCHROME1 or MONOCHROME2"),
        ("no_pixels", "without pixel data"),
        ("truncated", "not decodable"),
        ("bomb", "decompression bomb"),
    ],
)
def test_films_that_cannot_be_rendered_say_why(film: np.ndarray, change: str, reason: str) -> None:
    import pydicom

    data = make_dicom(film.astype(np.uint16) * 16, bits_stored=12)
    ds = pydicom.dcmread(io.BytesIO(data))
    if change == "frames":
        ds.NumberOfFrames = 3
    elif change == "rgb":
        ds.PhotometricInterpretation = "RGB"
    elif change == "no_pixels":
        del ds.PixelData
    elif change == "truncated":
        ds.PixelData = ds.PixelData[:100]
    buffer = io.BytesIO()
    ds.save_as(buffer)
    limit = 100 if change == "bomb" else LIMIT
    with pytest.raises(DicomError, match=reason):
        render_dicom(buffer.getvalue(), limit)


def test_dicom_is_told_by_content_not_name(tmp_path: Path, film: np.ndarray) -> None:
    assert is_dicom(make_dicom(film.astype(np.uint16), bits_stored=12))
    assert not is_dicom(XRAY.read_bytes())
    # "DICM" after 128 bytes and nothing else: a DICOM file, but no film in it
    with pytest.raises(DicomError, match="without pixel data"):
        render_dicom(b"\0" * 128 + b"DICM" + b"\0" * 64, LIMIT)


def test_the_patient_secret_is_given_or_generated_once_and_private(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from pipeline.data.steps import patient_secret
    from pipeline.settings import Settings

    settings = Settings(home=tmp_path / "home")
    first = patient_secret(settings)
    stored = tmp_path / "home" / "patient_key_secret"
    assert len(first) == 64 and stored.stat().st_mode & 0o777 == 0o600
    assert patient_secret(settings) == first  # stable: keys stay the same across ingests
    assert list(stored.parent.glob(".patient_key_secret.*")) == []  # no temporary left
    given = Settings(home=tmp_path / "home", patient_key_secret=SecretStr("from-env"))
    assert patient_secret(given) == "from-env"
