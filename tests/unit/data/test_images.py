import io

import numpy as np
import pytest
from PIL import Image

from pipeline.data.images import inspect_image
from pipeline.train.inputs import InputSpec, prepare_image
from tests.conftest import SAMPLE, image_bytes

LIMIT = 10_000_000


@pytest.mark.parametrize(("mode", "fmt"), [("L", "JPEG"), ("RGB", "JPEG"), ("L", "PNG")])
def test_good_images_are_described(mode: str, fmt: str) -> None:
    info = inspect_image(image_bytes((120, 90), mode, fmt), LIMIT)
    assert info.decodable and info.issue is None
    assert (info.width, info.height, info.mode, info.bit_depth) == (120, 90, mode, 8)
    assert info.channels == (1 if mode == "L" else 3)
    assert 0 < info.mean < 255 and info.std > 0


def test_zero_byte_file() -> None:
    info = inspect_image(b"", LIMIT)
    assert not info.decodable and info.issue == "empty file (0 bytes)"


def test_truncated_jpeg_keeps_its_header_size() -> None:
    data = image_bytes((200, 160))
    info = inspect_image(data[: len(data) // 2], LIMIT)
    assert not info.decodable
    assert info.issue.startswith("truncated or corrupt image data")
    assert (info.width, info.height) == (200, 160)


def test_text_renamed_as_image() -> None:
    info = inspect_image(b"this is a radiology report, not an image\n", LIMIT)
    assert not info.decodable and info.issue == "not a JPEG, PNG or DICOM image"


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "GIF"])
def test_other_image_formats_are_refused_by_content(fmt: str) -> None:
    # PIL decodes these, but the service and the model's decoder take JPEG and PNG only.
    info = inspect_image(image_bytes((40, 30), "L", fmt), LIMIT)
    assert not info.decodable and info.issue == "not a JPEG, PNG or DICOM image"


def test_dicom_is_named_as_such() -> None:
    dicom = b"\0" * 128 + b"DICM" + b"\0" * 64
    assert inspect_image(dicom, LIMIT).issue.startswith("a DICOM file, not a JPEG or PNG image")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_the_format_comes_from_the_content(fmt: str) -> None:
    assert inspect_image(image_bytes((40, 30), "L", fmt), LIMIT).format == fmt.lower()


def test_decompression_bomb_is_refused_before_decoding() -> None:
    buffer = io.BytesIO()
    Image.new("L", (5000, 4000)).save(buffer, "PNG")  # ~20 kB claiming 20 Mpx
    info = inspect_image(buffer.getvalue(), max_pixels=1_000_000)
    assert not info.decodable
    assert info.issue == "decompression bomb: 5000x4000 = 20000000 pixels > 1000000"


@pytest.mark.parametrize(
    ("mode", "fmt", "bits", "bands"),
    [("I;16", "PNG", 16, 1), ("P", "PNG", 8, 1), ("CMYK", "JPEG", 8, 4)],
)
def test_unexpected_modes_are_flagged_but_decodable(
    mode: str, fmt: str, bits: int, bands: int
) -> None:
    info = inspect_image(image_bytes((40, 30), mode, fmt), LIMIT)
    assert info.decodable
    assert (
        info.issue
        == f"unsupported mode {mode!r} ({bits}-bit, {bands} bands); expected 8-bit L or RGB"
    )
    assert info.bit_depth == bits


def film_with_alpha(mode: str, alpha: np.ndarray) -> tuple[bytes, bytes]:
    """(the sample film as a plain PNG, the same film in `mode` with `alpha` as its alpha band)."""
    gray = Image.open(sorted((SAMPLE / "train" / "NORMAL").iterdir())[0]).convert("L")
    gray = gray.resize((64, 48))
    plain, banded = io.BytesIO(), io.BytesIO()
    gray.save(plain, "PNG")
    film = gray.convert(mode.removesuffix("A") or "L")
    film.putalpha(Image.fromarray(alpha))
    assert film.mode == mode
    film.save(banded, "PNG")
    return plain.getvalue(), banded.getvalue()


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_an_opaque_alpha_band_is_read_as_the_film_beneath(mode: str) -> None:
    plain, banded = film_with_alpha(mode, np.full((48, 64), 255, np.uint8))
    info, reference = inspect_image(banded, LIMIT), inspect_image(plain, LIMIT)
    assert info.decodable and info.issue is None and info.mode == mode
    assert (info.mean, info.std) == pytest.approx((reference.mean, reference.std))
    for spec in (InputSpec(32, 1), InputSpec(32, 3)):  # what both models are given
        np.testing.assert_array_equal(prepare_image(banded, spec), prepare_image(plain, spec))


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_real_transparency_is_refused_with_how_much(mode: str) -> None:
    alpha = np.full((48, 64), 255, np.uint8)
    alpha[:12] = 0  # the top quarter see-through
    _, banded = film_with_alpha(mode, alpha)
    info = inspect_image(banded, LIMIT)
    assert info.decodable
    assert info.issue == (
        f"translucent {mode} image: 25.0% of pixels have alpha below 255 (lowest 0); "
        "an X-ray exported with an opaque alpha band is accepted"
    )
