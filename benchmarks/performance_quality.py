"""How often the performance check's drop rule is wrong: false alarms on a model that works as
validated, and detection of real drops, by how many labelled films have arrived.

    python -m benchmarks.performance_quality [--batches 200] [--resamples 1000] [--out CSV]

A version validated at sensitivity 0.95 and specificity 0.90 (the project's goal) with
binormal scores: NORMAL margins N(0, 1), PNEUMONIA N(mu, 1), the served threshold where
specificity is 0.90 and mu where sensitivity is 0.95 (validated AUC = Phi(mu / sqrt 2) =
0.981). A drop of d in specificity moves the NORMAL films' scores up until specificity is
0.90 - d, which also lowers the AUC; the PNEUMONIA films' scores stay. Each batch (labelled
films at the site's prevalence, 62 % PNEUMONIA; one film per patient) goes through
`measure_version`, the function `pneumo performance` runs, with `PerformanceConfig`'s defaults
(tolerance 0.05, >= 30 films of the class a metric counts, 95 % patient bootstrap). Printed
per batch size x drop: the share of batches that alert (any metric) and that alert on
specificity. At d = 0 that share is the false-alarm rate; d = 0.05 is the tolerance itself.
Synthetic scores on purpose: the rule's error rates depend on the films' count and the
distance of the realised figure from the floor, not on what the films show.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from pipeline.monitor.performance import Validated, measure_version
from pipeline.settings import PerformanceConfig

SENSITIVITY, SPECIFICITY, PREVALENCE = 0.95, 0.90, 0.62
THRESHOLD = norm.ppf(SPECIFICITY)  # on the NORMAL films' margin scale
MU = THRESHOLD + norm.ppf(SENSITIVITY)
VALIDATED = {
    "roc_auc": float(norm.cdf(MU / np.sqrt(2))),
    "sensitivity": SENSITIVITY,
    "specificity": SPECIFICITY,
}
SIZES = (60, 100, 200, 400, 800)
DROPS = (0.0, 0.05, 0.10, 0.15, 0.25)


def batch(n: int, drop: float, rng: np.random.Generator) -> pd.DataFrame:
    """n labelled films as the performance check joins them: probability, served threshold,
    truth, patient."""
    truth = (rng.random(n) < PREVALENCE).astype(int)
    shift = THRESHOLD - norm.ppf(SPECIFICITY - drop)  # NORMAL scores move up by this much
    margin = np.where(truth == 1, rng.normal(MU, 1, n), rng.normal(shift, 1, n)) - THRESHOLD
    return pd.DataFrame(
        {
            "probability": 1 / (1 + np.exp(-margin)),  # >= 0.5 exactly when served PNEUMONIA
            "threshold": 0.5,
            "truth": truth,
            "patient_id": [f"p{i}" for i in range(n)],
        }
    )


def alert_rates(n: int, drop: float, batches: int, cfg: PerformanceConfig, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    validated = Validated(VALIDATED, "benchmark")
    judged = [
        measure_version(batch(n, drop, rng), "pneumonia-resnet", "1", validated, cfg).dropped
        for _ in range(batches)
    ]
    return {
        "films": n,
        "specificity_drop": drop,
        "alerts": np.mean([bool(d) for d in judged]),
        "specificity_alerts": np.mean(["specificity" in d for d in judged]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cfg = PerformanceConfig(resamples=args.resamples)
    started = time.perf_counter()
    rows = [
        alert_rates(n, drop, args.batches, cfg, seed=1000 * n + int(100 * drop))
        for n in SIZES
        for drop in DROPS
    ]
    table = pd.DataFrame(rows)
    print(f"validated: {VALIDATED}; {args.batches} batches per cell, {args.resamples} resamples")
    for column in ("alerts", "specificity_alerts"):
        wide = table.pivot(index="films", columns="specificity_drop", values=column)
        print(f"\nshare of batches with {column.replace('_', ' ')} (rows: labelled films)")
        print(wide.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\n{time.perf_counter() - started:.0f} s")
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
