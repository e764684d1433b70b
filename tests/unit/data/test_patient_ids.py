import pytest

from pipeline.data.ingest import parse_patient_id, parse_subtype


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1_bacteria_1.jpeg", "person1"),
        ("person1427_virus_2437.jpeg", "person1427"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-0588-0001.jpeg", "NORMAL2-IM-0588"),
        ("NORMAL2-IM-0832-0001-0002.jpeg", "NORMAL2-IM-0832"),
        ("IM-0640-0001-0001.jpeg", "IM-0640"),
        ("scan_7.png", "scan_7"),
    ],
)
def test_patient_id_follows_kermany_naming(name: str, patient: str) -> None:
    assert parse_patient_id(name) == patient


def test_normal2_and_im_series_are_different_patients() -> None:
    assert parse_patient_id("NORMAL2-IM-0001-0001.jpeg") != parse_patient_id("IM-0001-0001.jpeg")


@pytest.mark.parametrize(
    ("name", "label", "subtype"),
    [
        ("person1_bacteria_1.jpeg", "PNEUMONIA", "bacteria"),
        ("person3_virus_15.jpeg", "PNEUMONIA", "virus"),
        ("IM-0115-0001.jpeg", "NORMAL", "normal"),
        ("odd.jpeg", "PNEUMONIA", "unknown"),
    ],
)
def test_subtype(name: str, label: str, subtype: str) -> None:
    assert parse_subtype(name, label) == subtype
