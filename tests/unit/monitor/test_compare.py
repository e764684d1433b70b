"""Champion against challenger on shadow traffic: pairing by content, agreement, the paired
comparison on labelled films and the recommendation `pneumo promote` can require."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.adapters.storage import LocalStore
from pipeline.monitor.compare import (
    KEEP,
    NOT_ENOUGH,
    PROMOTE,
    compare_shadow,
    explain_disagreements,
    find_films,
    last_comparison,
    missing_evidence,
    shadow_pairs,
    store_comparison,
)
from pipeline.monitor.labels import add_labels
from pipeline.predict.inference_log import append_inference_log
from pipeline.settings import PerformanceConfig
from tests.conftest import SAMPLE

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
CFG = PerformanceConfig(min_per_class=30, resamples=200)


@dataclass
class Version:
    version: str


class Aliases:
    """The registry as compare reads it: which version each alias names."""

    def __init__(self, **aliases: str) -> None:
        self.aliases = aliases

    def alias_version(self, _name: str, alias: str) -> Version | None:
        return Version(self.aliases[alias]) if alias in self.aliases else None


def rows(alias: str, version: str, probabilities, threshold: float = 0.5, start: int = 0):
    n = len(probabilities)
    return pd.DataFrame(
        {
            "image": [f"film-{i}.jpeg" for i in range(start, start + n)],
            "sha256": [f"{i:064x}" for i in range(start, start + n)],
            "probability": probabilities,
            "label": ["PNEUMONIA" if p >= threshold else "NORMAL" for p in probabilities],
            "threshold": threshold,
            "model_name": "pneumonia-resnet",
            "model_version": version,
            "alias": alias,
            "timestamp": pd.Timestamp(NOW - timedelta(hours=1)),
        }
    )


def labels_csv(path: Path, truth: np.ndarray) -> Path:
    names = [f"film-{i}.jpeg" for i in range(len(truth))]
    table = pd.DataFrame(
        {
            "image": names,
            "label": np.where(truth == 1, "PNEUMONIA", "NORMAL"),
            "patient": [f"p{i}" for i in range(len(truth))],
        }
    )
    table.to_csv(path, index=False)
    return path


def test_pairs_join_the_same_film_under_both_aliases_and_skip_unpaired_ones() -> None:
    log = pd.concat(
        [rows("champion", "3", [0.9, 0.2, 0.6]), rows("challenger", "4", [0.8, 0.7])],
        ignore_index=True,
    )
    pairs = shadow_pairs(log, "3", "4")
    assert len(pairs) == 2  # film-2 was never shadowed
    assert list(pairs["probability_challenger"]) == [0.8, 0.7]
    assert list(pairs["label_champion"]) == ["PNEUMONIA", "NORMAL"]
    assert shadow_pairs(log.drop(columns="alias"), "3", "4").empty  # logs before the shadow


def test_agreement_and_disagreements_without_labels(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    append_inference_log(store, rows("champion", "3", [0.9, 0.2, 0.6, 0.1]), NOW)
    append_inference_log(store, rows("challenger", "4", [0.8, 0.7, 0.6, 0.2]), NOW)
    result = compare_shadow(store, Aliases(champion="3", challenger="4"), CFG, 0.01, NOW)
    assert (result.pairs, result.disagreements, result.agreement) == (4, 1, 0.75)
    assert result.listed[0]["image"] == "film-1.jpeg"
    assert result.listed[0]["challenger"] == {"probability": 0.7, "label": "PNEUMONIA"}
    assert result.mean_abs_difference == pytest.approx((0.1 + 0.5 + 0 + 0.1) / 4)
    assert result.recommendation == NOT_ENOUGH and result.auc is None


def test_nothing_to_compare_when_the_challenger_is_the_champion(tmp_path: Path) -> None:
    result = compare_shadow(
        LocalStore(tmp_path), Aliases(champion="3", challenger="3"), CFG, 0.01, NOW
    )
    assert result.pairs == 0 and result.recommendation == NOT_ENOUGH
    assert "the challenger is the champion" in result.reasons[0]


@pytest.mark.parametrize(
    ("challenger_noise", "expected"), [(0.05, PROMOTE), (0.6, KEEP)], ids=["better", "worse"]
)
def test_labelled_shadow_traffic_gives_a_paired_recommendation(
    tmp_path: Path, challenger_noise: float, expected: str
) -> None:
    rng = np.random.default_rng(0)
    truth = rng.permutation(np.repeat([0, 1], 60))
    champion = np.clip(truth * 0.5 + 0.25 + rng.normal(0, 0.2, truth.size), 0, 1)
    challenger = np.clip(truth * 0.6 + 0.2 + rng.normal(0, challenger_noise, truth.size), 0, 1)
    store = LocalStore(tmp_path / "store")
    append_inference_log(store, rows("champion", "3", champion), NOW)
    append_inference_log(store, rows("challenger", "4", challenger), NOW)
    add_labels(store, labels_csv(tmp_path / "reads.csv", truth), 10_000_000)
    result = compare_shadow(store, Aliases(champion="3", challenger="4"), CFG, 0.01, NOW)
    assert result.labelled == {"NORMAL": 60, "PNEUMONIA": 60}
    assert result.recommendation == expected, result.reasons
    assert result.auc["ci_low"] <= result.auc["difference"] <= result.auc["ci_high"]
    assert set(result.rates) == {"champion", "challenger"}


def test_promotion_evidence_must_name_the_version_and_recommend_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert "no shadow comparison has run" in missing_evidence(last_comparison(store), "4")
    append_inference_log(store, rows("champion", "3", [0.9, 0.2]), NOW)
    append_inference_log(store, rows("challenger", "4", [0.8, 0.3]), NOW)
    store_comparison(
        store, compare_shadow(store, Aliases(champion="3", challenger="4"), CFG, 0.01, NOW)
    )
    summary = last_comparison(store)
    assert "judged v4, not v5" in missing_evidence(summary, "5")
    assert "says not enough evidence" in missing_evidence(summary, "4")
    assert missing_evidence(summary | {"recommendation": PROMOTE}, "4") is None


def test_disagreements_found_among_the_films_get_both_models_grad_cam(tmp_path: Path) -> None:
    """Real films (the sample), logged under their own digests; two CNNs that differ."""
    from PIL import Image

    from pipeline.adapters.storage import sha256_hex
    from pipeline.settings import TrainConfig
    from pipeline.train.models import build_cnn

    folder = tmp_path / "traffic"
    folder.mkdir()
    sources = sorted((SAMPLE / "test" / "PNEUMONIA").iterdir())[:3]
    for source in sources[:2]:  # the third film is not in the folder
        (folder / source.name).write_bytes(source.read_bytes())
    store = LocalStore(tmp_path / "store")
    log = [rows(alias, v, p) for alias, v, p in
           (("champion", "3", [0.9, 0.2, 0.3]), ("challenger", "4", [0.2, 0.8, 0.7]))]  # fmt: skip
    for table in log:
        table["sha256"] = [sha256_hex(s.read_bytes()) for s in sources]
        append_inference_log(store, table, NOW)
    comparison = compare_shadow(store, Aliases(champion="3", challenger="4"), CFG, 0.01, NOW)
    assert comparison.disagreements == 3

    digests = {item["sha256"] for item in comparison.listed}
    found = find_films(folder, digests, 10_000_000)
    assert set(found) == {sha256_hex(s.read_bytes()) for s in sources[:2]}
    cfg = TrainConfig(image_size=32)
    models = {"champion": build_cnn(cfg, 0.3), "challenger": build_cnn(cfg, 0.7)}
    explained = explain_disagreements(comparison, found, models, store, max_side=64)

    shown = [item for item in explained.listed if "gradcam" in item]
    assert {item["sha256"] for item in shown} == set(found)
    for item in shown:
        key = f"reports/shadow/gradcam/{item['sha256'][:16]}-v3-v4.png"
        assert item["gradcam"] == store.uri(key)
        picture = Image.open(io.BytesIO(store.get(key)))
        # Two overlays of the film side by side, each at most 64 px on its longest side.
        assert picture.mode == "RGB" and max(picture.size[0] // 2, picture.size[1]) == 64
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_films(tmp_path / "missing", digests, 10_000_000)
