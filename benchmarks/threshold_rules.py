"""Which threshold rule meets "sensitivity >= 0.95 at specificity >= 0.90" out of sample?

    python -m benchmarks.threshold_rules RUN_REPORT_DIR [--splits 200]

Reads the `val_predictions.csv` and `test_predictions.csv` a training run wrote for one model.
The rule is chosen on validation only: val is split in halves by patient many times, each rule
picks its threshold on one half and is scored on the other. The test split then shows how the
threshold the rule picks on all of val transfers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.settings import ThresholdConfig
from pipeline.train.metrics import choose_threshold, compute_metrics

RULES = {
    "youden": ThresholdConfig(rule="youden"),
    **{
        f"sensitivity {target:.2f}": ThresholdConfig(target_sensitivity=target)
        for target in (0.90, 0.95, 0.96, 0.97, 0.98)
    },
}


def labels_scores(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return (frame["label"] == "PNEUMONIA").to_numpy(int), frame["probability"].to_numpy()


def half_splits(val: pd.DataFrame, splits: int, seed: int = 0) -> pd.DataFrame:
    """Per rule: the share of patient-level half splits where the held-out half met the goal."""
    rng = np.random.default_rng(seed)
    patients = val["patient_id"].unique()
    rows = []
    for _ in range(splits):
        chosen = set(rng.choice(patients, len(patients) // 2, replace=False))
        pick = val[val["patient_id"].isin(chosen)]
        held = val[~val["patient_id"].isin(chosen)]
        for name, cfg in RULES.items():
            threshold, _ = choose_threshold(*labels_scores(pick), cfg)
            m = compute_metrics(*labels_scores(held), threshold)
            rows.append({"rule": name, "sens": m["sensitivity"], "spec": m["specificity"]})
    frame = pd.DataFrame(rows).assign(
        goal=lambda f: (f["sens"] >= 0.95) & (f["spec"] >= 0.90),
        sens_ok=lambda f: f["sens"] >= 0.95,
    )
    return frame.groupby("rule", sort=False).agg(
        sens_mean=("sens", "mean"),
        spec_mean=("spec", "mean"),
        sens_at_least_095=("sens_ok", "mean"),
        goal_met=("goal", "mean"),
    )


def transfer(val: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for name, cfg in RULES.items():
        threshold, _ = choose_threshold(*labels_scores(val), cfg)
        on_val = compute_metrics(*labels_scores(val), threshold)
        on_test = compute_metrics(*labels_scores(test), threshold)
        rows.append(
            {
                "rule": name,
                "threshold": threshold,
                "val_sens": on_val["sensitivity"],
                "val_spec": on_val["specificity"],
                "test_sens": on_test["sensitivity"],
                "test_spec": on_test["specificity"],
            }
        )
    return pd.DataFrame(rows).set_index("rule")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dir", type=Path)
    parser.add_argument("--splits", type=int, default=200)
    args = parser.parse_args()
    val = pd.read_csv(args.report_dir / "val_predictions.csv")
    test = pd.read_csv(args.report_dir / "test_predictions.csv")
    print(f"val {len(val)} images, test {len(test)} images ({args.report_dir})\n")
    print("Chosen on one half of val, scored on the other (patient-level halves):")
    print(half_splits(val, args.splits).round(3).to_string())
    print("\nChosen on all of val, then on the test split:")
    print(transfer(val, test).round(3).to_string())


if __name__ == "__main__":
    main()
