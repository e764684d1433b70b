import io

import pytest
from PIL import Image

from pipeline.data.images import inspect_image
from tests.conftest import image_bytes

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
    [("I;16", "PNG", 16, 1), ("RGBA", "PNG", 8, 4), ("CMYK", "JPEG", 8, 4)],
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
