"""How often the intended-use check flags films: real films of both periods, and what is not one.

    python -m benchmarks.scope_quality --home DIR [--site DIR]

`--home` holds a full-scale state with a ResNet champion registered since the check existed (its
distance fitted on the val films; `benchmarks.site_transfer --train` makes one). Every film goes
through `predict_batch`, as `batch-predict` scores it, and the table gives the share flagged
`in_scope: false` per group, with the reasons seen, at the stored cut-off and at the cut-offs
registration would set for other false-flag rates (refitted on the same val films: the fit is
the same, only its quantile moves):

- false flags: the carved test split (films of the training period nothing trained on) and the
  site's films (`shared/data/chest_xray_site`, a later period of the same hospital);
- what must be flagged: pydicom's own non-chest test files (CT, MR, NM, US, segmentation), once
  as DICOM (their tags apply) and once rendered to PNG (the image alone, as a JPEG export of
  them would arrive); photographs (matplotlib's sample images, in colour and in gray); synthetic
  flat, noise and gradient images;
- made from real films, reported but not required: a film turned on its side, one lung (a
  half film), an inverted film. No lateral film was at hand, so none is claimed.
"""

from __future__ import annotations

import argparse
import io
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from benchmarks.common import SHARED
from flows.cli import configure_runtime
from pipeline.adapters.backends import open_store
from pipeline.adapters.registry import Registry
from pipeline.data.dicom import DicomError, image_pixels
from pipeline.data.manifest import load_manifest
from pipeline.data.scope import UNLIKE_TRAINING, fit_scope
from pipeline.monitor.site import read_labelled_films
from pipeline.predict.champion import load_champion
from pipeline.predict.probe import probe_images
from pipeline.predict.scoring import predict_batch
from pipeline.settings import Settings

SITE = SHARED / "data" / "chest_xray_site"
# Single-frame grayscale images of other modalities and body parts that pydicom ships.
PYDICOM_FILES = (
    "CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm", "MR_small.dcm",
    "examples_overlay.dcm", "JPEG2000.dcm", "JPEG-lossy.dcm", "liver_1frame.dcm", "image_dfl.dcm",
)  # fmt: skip
PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")
# False-flag rates on the val films to compare (cut-offs as registration sets them).
RATES = (0.02, 0.01, 0.005)
Items = list[tuple[str, bytes]]


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def carved_test_films(settings: Settings) -> Items:
    """The manifest's carved test split, as stored."""
    store = open_store(settings)
    _, manifest = load_manifest(store)
    rows = manifest[(manifest["split"] == "test") & ~manifest["quarantined"].astype(bool)]
    return [(row.path, store.get(row.key)) for row in rows.itertuples()]


def pydicom_films(max_pixels: int) -> tuple[Items, Items]:
    """(the DICOM files as sent, each rendered to PNG) for those that render as one film."""
    from pydicom.data import get_testdata_file

    as_sent, rendered = [], []
    for name in PYDICOM_FILES:
        path = get_testdata_file(name)
        if path is None:  # not shipped by this pydicom version
            continue
        data = Path(path).read_bytes()
        try:
            rendered.append((name, image_pixels(data, max_pixels)))
        except DicomError:
            continue
        as_sent.append((name, data))
    return as_sent, rendered


def photographs() -> tuple[Items, Items]:
    """(matplotlib's sample images, the same in gray)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "sample_data"
    images = {name: Image.open(folder / name).convert("RGB") for name in PHOTOS}
    colour = [(name, png(image)) for name, image in images.items()]
    return colour, [(f"{name} (gray)", png(image.convert("L"))) for name, image in images.items()]


def synthetic(seed: int = 0) -> Items:
    rng = np.random.default_rng(seed)
    side = (224, 224)
    images = {
        "flat gray": np.full(side, 128),
        "black": np.zeros(side),
        "uniform noise": rng.integers(0, 256, side),
        "gaussian noise": np.clip(rng.normal(128, 40, side), 0, 255),
        "horizontal gradient": np.tile(np.linspace(0, 255, side[1]), (side[0], 1)),
        "radial gradient": 255 * np.hypot(*np.mgrid[-1:1:224j, -1:1:224j]) / np.sqrt(2),
        "checkerboard": 255 * ((np.indices(side) // 28).sum(axis=0) % 2),
    }
    return [(name, png(Image.fromarray(a.astype(np.uint8), "L"))) for name, a in images.items()]


def made_from_films(films: Items, count: int = 40) -> dict[str, Items]:
    """Real site films changed in ways a sender might: turned, cut to one lung, inverted."""
    changes: dict[str, Callable[[Image.Image], Image.Image]] = {
        "film turned 90°": lambda im: im.rotate(90, expand=True),
        "one lung (half film)": lambda im: im.crop((0, 0, im.width // 2, im.height)),
        "inverted film": ImageOps.invert,
    }
    picked = films[:: max(1, len(films) // count)][:count]
    grays = [(name, Image.open(io.BytesIO(data)).convert("L")) for name, data in picked]
    return {
        what: [(name, png(change(image))) for name, image in grays]
        for what, change in changes.items()
    }


def val_embeddings(champion, settings: Settings) -> np.ndarray:
    """The champion's pooled features of its val films: what registration fits the distance on."""
    store = open_store(settings)
    _, manifest = load_manifest(store)
    rows = manifest[(manifest["split"] == "val") & ~manifest["quarantined"].astype(bool)]
    _, embeddings, _ = probe_images(champion.probe, [store.get(key) for key in rows["key"]])
    return embeddings


def cutoffs_by_rate(champion, settings: Settings) -> dict[float, float]:
    """The cut-off registration would set for each false-flag rate (the fit is the same, only
    the quantile moves), the stored one among them, checked against it."""
    embeddings = val_embeddings(champion, settings)
    stored = champion.scope
    found = {
        rate: fit_scope(embeddings, settings.scope.model_copy(update={"false_flag_rate": rate}))
        for rate in sorted({*RATES, stored.false_flag_rate}, reverse=True)
    }
    if not np.isclose(found[stored.false_flag_rate].cutoff, stored.cutoff, rtol=1e-6):
        raise SystemExit(
            f"refitting the val films gives cut-off {found[stored.false_flag_rate].cutoff:.3f}, "
            f"the version stores {stored.cutoff:.3f}: not the films or settings it was fitted on"
        )
    return {rate: model.cutoff for rate, model in found.items()}


def flags(champion, items: Items, settings: Settings) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Per scored film: its distance, whether another check (image, tags) flagged it; and the
    kinds of reason seen."""
    predictions, rejected = predict_batch(
        champion, items, settings.ingest.max_pixels, scope_cfg=settings.scope
    )
    reasons = [[r for r in found.split("; ") if r] for found in predictions["scope_reasons"]]
    other = np.array([any(not r.startswith(UNLIKE_TRAINING) for r in found) for found in reasons])
    kinds = Counter(r.split(" (")[0] for found in reasons for r in found)
    kinds.update(f"refused: {issue.split(':')[0]}" for issue in rejected["issue"])
    return predictions["ood_distance"].to_numpy(float), other, kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".bench/site"))
    parser.add_argument("--site", type=Path, default=SITE)
    args = parser.parse_args()
    os.environ["PNEUMO_HOME"] = str(args.home)
    settings = Settings(home=args.home)
    configure_runtime(settings)
    champion = load_champion(Registry.from_settings(settings), settings.cache_dir / "bench")
    if champion.scope is None:
        raise SystemExit(f"{champion.name} v{champion.version} has no fitted distance: retrain")
    site = read_labelled_films(args.site, settings.ingest.max_pixels)
    site_items = list(zip(site.rows["name"], site.data, strict=True))
    dicom, rendered = pydicom_films(settings.ingest.max_pixels)
    colour, gray = photographs()
    groups = {
        "carved test split (false flags; goal <= 2 %)": carved_test_films(settings),
        "site films (false flags; goal <= 5 %)": site_items,
        "pydicom non-chest files, as DICOM (goal 100 %)": dicom,
        "the same, rendered to PNG: image alone (goal 100 %)": rendered,
        "photographs, colour (goal 100 %)": colour,
        "photographs, gray (goal 100 %)": gray,
        "synthetic flat, noise, gradients (goal 100 %)": synthetic(),
        **made_from_films(site_items),
    }
    cutoffs = cutoffs_by_rate(champion, settings)
    print(
        f"{champion.name} v{champion.version}: stored cut-off {champion.scope.cutoff:.2f} "
        f"({champion.scope.false_flag_rate:.1%} of {champion.scope.reference_films} val films)"
    )
    heads = " | ".join(f"flagged at {rate:.1%} ({cut:.2f})" for rate, cut in cutoffs.items())
    print(f"| films | n | {heads} | reasons seen (stored cut-off) |")
    print("| --- | --- |" + " --- |" * (len(cutoffs) + 1))
    for what, items in groups.items():
        distances, other, kinds = flags(champion, items, settings)
        rates = " | ".join(f"{np.mean(other | (distances > c)):.1%}" for c in cutoffs.values())
        seen = ", ".join(f"{kind} {n}" for kind, n in kinds.most_common()) or "none"
        print(f"| {what} | {len(distances)} | {rates} | {seen} |", flush=True)


if __name__ == "__main__":
    main()
