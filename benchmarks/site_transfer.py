"""How the champion does on the deployment site's films: as trained, after site acceptance.

    python -m benchmarks.site_transfer --home DIR [--site DIR] [--train] [--seed 0]

`--home` holds a full-scale state: `--train` (or a home without a champion) first ingests the
5,216 official train films (`shared/data/chest_xray_train224`) and runs the training flow with
the shared ImageNet weights, timing it. Then, on the site's labelled films (default
`shared/data/chest_xray_site`, 204 films of a later period; never trained on):

1. the default training alone: AUC and, at the val-chosen threshold, sensitivity and
   specificity, with 95 % patient-bootstrap intervals;
2. site acceptance, honestly: the site films split in halves by patient; the threshold chosen
   on half A by the project's rule, measured on half B (and the reverse);
3. `pneumo site accept` on all the films, as a site runs it: in-sample figures and the share of
   patient halves in which the goal held out of sample;
4. with `--retrain`: `pneumo retrain --labeled` on half A (which keeps part of it to judge and
   to set the threshold), the new champion then scored on half B, which nothing trained on.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import SHARED, TRAIN224, WEIGHTS
from flows.cli import configure_runtime
from pipeline.adapters.registry import Registry
from pipeline.monitor.site import (
    LabelledFilms,
    accept_on_site,
    patient_halves,
    read_labelled_films,
    score_films,
    write_films,
)
from pipeline.predict.champion import load_champion
from pipeline.settings import Settings
from pipeline.train.metrics import choose_threshold
from pipeline.train.uncertainty import (
    INTERVAL_METRICS,
    bootstrap_intervals,
    interval_columns,
    rate_metrics,
    with_interval,
)

SITE = SHARED / "data" / "chest_xray_site"


def train_full_scale() -> float:
    """Ingest the official train films and run the training flow; its wall time (s)."""
    os.environ["PNEUMO_TRAIN__RESNET_WEIGHTS"] = str(WEIGHTS)
    from flows.training import training_pipeline

    start = time.perf_counter()
    training_pipeline(data_path=str(TRAIN224))
    return time.perf_counter() - start


def figures(labels: np.ndarray, scores: np.ndarray, threshold: float, patients: list) -> dict:
    metrics = rate_metrics(labels, scores, threshold)
    return metrics | interval_columns(bootstrap_intervals(labels, scores, threshold, patients))


def line(what: str, metrics: dict) -> str:
    cells = " | ".join(with_interval(metrics, name) for name in INTERVAL_METRICS)
    return f"| {what} | {cells} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".bench/site"))
    parser.add_argument("--site", type=Path, default=SITE)
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true", help="step 4 (about 10 minutes)")
    args = parser.parse_args()
    os.environ["PNEUMO_HOME"] = str(args.home)  # the flows read their settings from it
    settings = Settings(home=args.home)
    configure_runtime(settings)  # Prefect's and MLflow's state in the home, as the CLI sets it
    registry = Registry.from_settings(settings)
    if args.train or registry.champion_version("pneumonia-resnet") is None:
        print(f"full-scale ingest + training: {train_full_scale():.0f} s")
    champion = load_champion(registry, settings.cache_dir / "bench")
    films = read_labelled_films(args.site, settings.ingest.max_pixels)
    labels, patients = films.labels, films.rows["patient_id"].astype(str).tolist()
    start = time.perf_counter()
    scores = score_films(champion, films, settings.ingest.max_pixels)
    print(
        f"{champion.name} v{champion.version} ({champion.info.get('weights_source')}): "
        f"{len(labels)} site films scored in {time.perf_counter() - start:.1f} s"
    )
    print("| step | AUC | sensitivity | specificity | PPV | NPV |\n| --- |" + " --- |" * 5)
    print(line(f"default training, served threshold {champion.threshold:.3f}",
               figures(labels, scores, champion.threshold, patients)))  # fmt: skip
    a, b = patient_halves(films, args.seed)
    for fit, check, name in ((a, b, "A -> B"), (b, a, "B -> A")):
        threshold, _ = choose_threshold(labels[fit], scores[fit], settings.threshold)
        held = figures(labels[check], scores[check], threshold, [patients[i] for i in check])
        print(line(f"site threshold {threshold:.3f} from half {name} ({len(check)} films)", held))
    result = accept_on_site(registry, settings, args.site, by="benchmarks.site_transfer")
    print(line(f"`site accept`, all films, in sample, threshold {result.threshold:.3f}",
               result.metrics))  # fmt: skip
    print(f"accepted: {result.accepted}; " + "; ".join(result.reasons))
    if args.retrain:
        retrain_on_half(films, a, b, settings)


def retrain_on_half(films: LabelledFilms, a: np.ndarray, b: np.ndarray, settings: Settings) -> None:
    """Retrain on half A's films, then score the retrained version (gate passed or not) and the
    champion on half B, each at its own threshold."""
    from flows.monitoring import retrain_champion

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        half_a = write_films(films.subset(a), Path(tmp))
        summary = retrain_champion(reason="site films, half A", labeled_path=str(half_a))
        resnet = summary.models["resnet"]
        gate = "; ".join(resnet.gate_reasons)
        print(f"retrain on half A ({len(a)} films): {time.perf_counter() - start:.0f} s, "
              f"phases {resnet.train_phases}; gate: {gate}")  # fmt: skip
    registry = Registry.from_settings(settings)
    held = films.subset(b)
    patients = held.rows["patient_id"].astype(str).tolist()
    for version, role in ((resnet.version, "retrained"), (None, "champion")):
        model = load_champion(registry, settings.cache_dir / f"bench-{role}", version=version)
        scores = score_films(model, held, settings.ingest.max_pixels)
        print(line(f"{role} v{model.version} on half B ({len(b)} films), its threshold "
                   f"{model.threshold:.3f}", figures(held.labels, scores, model.threshold,
                                                     patients)))  # fmt: skip


if __name__ == "__main__":
    main()
