"""Calibration: validation scores mapped to probabilities that mean what they say.

Class weighting and early stopping on AUC leave the raw sigmoid far from a frequency: on the
full-scale run the CNN's test ECE was 0.21 (0.03 after Platt scaling). A calibrator is fitted on
the validation split and built into the registered model's own layers (`calibrate_model`), so
the service, batch inference, the drift reference and the champion re-scoring all read the same
calibrated `probability`, and the threshold is chosen on that scale.

Platt scaling (a slope and an intercept on the logit; temperature scaling is its zero-intercept
case) is the default. Isotonic regression is used only when patient-grouped cross-validation on
the validation split shows it measurably better: its plateaus tie scores (AUC drops a little) and
it overfits small validation sets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import GroupKFold

from pipeline.figures import pyplot, save_figure
from pipeline.settings import CalibrationConfig
from pipeline.train.models import HEAD_LAYER

ISOTONIC_LAYERS = ("calibration_knots", "calibration_map")


@dataclass(frozen=True)
class Calibration:
    """The fitted map from the model's logit (Platt) or probability (isotonic) to a probability.

    `cv_ece` holds each method's cross-validated ECE on val (what `auto` chose on).
    """

    method: str  # "platt", "isotonic" or "none"
    why: str
    slope: float = 1.0
    intercept: float = 0.0
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    cv_ece: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        if self.method == "platt":
            return f"Platt scaling: sigmoid({self.slope:.3f} * logit + {self.intercept:.3f})"
        if self.method == "isotonic":
            return f"isotonic regression ({len(self.knots_x)} knots)"
        return "none"

    def to_dict(self) -> dict:
        return asdict(self)


def bin_index(probs: np.ndarray, bins: int) -> np.ndarray:
    """Each probability's equal-width bin (1.0 in the last one)."""
    return np.minimum((probs * bins).astype(int), bins - 1)


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """ECE: |mean probability - observed rate| per equal-width bin, weighted by bin size."""
    labels, probs = np.asarray(labels, float), np.asarray(probs, float)
    if not len(probs):
        return float("nan")
    index = bin_index(probs, bins)
    gap = 0.0
    for b in np.unique(index):
        in_bin = index == b
        gap += in_bin.mean() * abs(probs[in_bin].mean() - labels[in_bin].mean())
    return float(gap)


def brier_score(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean squared error of the probability against the 0/1 outcome."""
    return float(np.mean((np.asarray(probs, float) - np.asarray(labels, float)) ** 2))


def fit_platt(labels: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) minimising log loss against Platt's (1999) smoothed targets.

    The smoothed targets (N+ + 1)/(N+ + 2) and 1/(N- + 2) keep the slope finite when the
    validation split is perfectly separated, which a small one often is.
    """
    labels = np.asarray(labels, int)
    positives, negatives = labels.sum(), len(labels) - labels.sum()
    target = np.where(labels == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))

    def loss(params: np.ndarray) -> float:
        z = params[0] * logits + params[1]
        # log(1 + e^z) - t*z, written to stay finite for large |z|
        return float(np.mean(np.logaddexp(0, z) - target * z))

    result = minimize(loss, x0=np.array([1.0, 0.0]), method="L-BFGS-B")
    return float(result.x[0]), float(result.x[1])


def fit_isotonic(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (x, y) of the increasing step-and-ramp map from probability to observed rate."""
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(probs, labels)
    return iso.X_thresholds_, iso.y_thresholds_


def apply_calibration(calibration: Calibration, logits: np.ndarray) -> np.ndarray:
    """The calibrated probability for raw logits, in numpy (float64): for fitting and checks.

    Served scores come from the model's own layers (`calibrate_model`), which compute the same
    map in float32.
    """
    if calibration.method == "platt":
        return expit(calibration.slope * logits + calibration.intercept)
    probs = expit(logits)
    if calibration.method == "isotonic":
        return np.interp(probs, calibration.knots_x, calibration.knots_y)
    return probs


def fit_method(method: str, labels: np.ndarray, logits: np.ndarray) -> Calibration:
    if method == "platt":
        slope, intercept = fit_platt(labels, logits)
        return Calibration("platt", "", slope, intercept)
    x, y = fit_isotonic(labels, expit(logits))
    return Calibration("isotonic", "", knots_x=tuple(map(float, x)), knots_y=tuple(map(float, y)))


def cross_validated_ece(
    method: str, labels: np.ndarray, logits: np.ndarray, groups: list[str], cfg: CalibrationConfig
) -> float:
    """ECE of `method` on held-out patients: each fold calibrated on the others."""
    folds = min(cfg.folds, len(set(groups)))
    calibrated = np.empty(len(labels))
    for fit_idx, held_idx in GroupKFold(folds).split(logits, labels, groups):
        if len(np.unique(labels[fit_idx])) < 2:
            return float("nan")
        fitted = fit_method(method, labels[fit_idx], logits[fit_idx])
        calibrated[held_idx] = apply_calibration(fitted, logits[held_idx])
    return expected_calibration_error(labels, calibrated, cfg.bins)


def choose_calibration(
    labels: np.ndarray, logits: np.ndarray, groups: list[str], cfg: CalibrationConfig
) -> Calibration:
    """Fit the configured calibrator on val; `auto` picks isotonic only on a val split of at
    least `isotonic_min_images` films where its cross-validated ECE beats Platt's by
    `isotonic_min_gain`, Platt otherwise."""
    labels = np.asarray(labels, int)
    if cfg.method == "none":
        return Calibration("none", "switched off (PNEUMO_CALIBRATION__METHOD=none)")
    if len(np.unique(labels)) < 2 or len(set(groups)) < 2:
        return Calibration("none", "validation split has one class or one patient: nothing to fit")
    cv = {m: cross_validated_ece(m, labels, logits, groups, cfg) for m in ("platt", "isotonic")}
    cv["uncalibrated"] = expected_calibration_error(labels, expit(logits), cfg.bins)
    if cfg.method != "auto":
        method, why = cfg.method, "configured"
    elif len(labels) < cfg.isotonic_min_images:
        method = "platt"
        why = f"{len(labels)} val films < {cfg.isotonic_min_images}: too few for isotonic"
    elif cv["isotonic"] <= cv["platt"] - cfg.isotonic_min_gain:
        method, why = (
            "isotonic",
            f"cross-validated ECE on val beats Platt by >= {cfg.isotonic_min_gain}",
        )
    else:
        method = "platt"
        why = (
            f"isotonic's cross-validated ECE on val does not beat Platt by {cfg.isotonic_min_gain}"
        )
    fitted = fit_method(method, labels, logits)
    if method == "platt" and fitted.slope <= 0:
        # A non-positive slope would reverse the ranking: the model is not worth calibrating.
        return Calibration("none", f"Platt slope {fitted.slope:.3f} <= 0 on val", cv_ece=cv)
    return Calibration(**{**fitted.to_dict(), "why": why, "cv_ece": cv})


def strip_calibration(model: keras.Model) -> keras.Model:
    """The model without appended isotonic layers (a Platt map lives in the head's weights).

    Fine-tuning through isotonic plateaus would see zero gradients, and recalibrating would
    stack a second map on the first.
    """
    if ISOTONIC_LAYERS[1] not in {layer.name for layer in model.layers}:
        return model
    return keras.Model(model.inputs, model.get_layer(HEAD_LAYER).output, name=model.name)


def calibrate_model(model: keras.Model, calibration: Calibration) -> keras.Model:
    """A model whose output is the calibrated probability, built from standard layers only.

    Platt: the head's logit is scaled and shifted in its own weights (Grad-CAM normalises the
    map, so it is unchanged). Isotonic: the piecewise-linear map as frozen layers over the
    probability, one clipped ramp per segment between knots, summed with the segments' rises.
    """
    base = strip_calibration(model)
    head = base.get_layer(HEAD_LAYER)
    if calibration.method == "platt":
        kernel, bias = head.get_weights()
        new_head = keras.layers.Dense(1, activation="sigmoid", name=HEAD_LAYER)
        output = new_head(head.input)
        new_head.set_weights(
            [kernel * calibration.slope, bias * calibration.slope + calibration.intercept]
        )
        return keras.Model(base.inputs, output, name=base.name)
    if calibration.method == "isotonic":
        x, y = np.asarray(calibration.knots_x), np.asarray(calibration.knots_y)
        width = np.maximum(np.diff(x), 1e-12)
        # Segment i's share of its ramp, clip((p - x_i) / width_i, 0, 1), times its rise: every
        # term is bounded by its rise, so nothing large cancels in float32.
        ramps = keras.layers.Dense(len(width), name=ISOTONIC_LAYERS[0])
        clipped = keras.layers.ReLU(max_value=1.0, name=f"{ISOTONIC_LAYERS[0]}_clip")
        rises = keras.layers.Dense(1, name=ISOTONIC_LAYERS[1])
        output = rises(clipped(ramps(base.output)))
        ramps.set_weights([(1 / width)[None, :], -x[:-1] / width])
        rises.set_weights([np.diff(y)[:, None], y[:1]])
        ramps.trainable = rises.trainable = False
        return keras.Model(base.inputs, output, name=base.name)
    return base


def head_logits(model: keras.Model, features: np.ndarray) -> np.ndarray:
    """The head's logit (before the sigmoid) for its input features, in float64."""
    kernel, bias = strip_calibration(model).get_layer(HEAD_LAYER).get_weights()
    return (features.astype(np.float64) @ kernel.astype(np.float64) + bias).ravel()


def score_features(model: keras.Model, features: np.ndarray) -> np.ndarray:
    """The model's output from its head's input features: the served computation, from the
    head on, without decoding and running the images through the network again."""
    tail = keras.Model(model.get_layer(HEAD_LAYER).input, model.output)
    return tail.predict(features, batch_size=1024, verbose=0).ravel()


def plot_reliability(
    labels: np.ndarray, before: np.ndarray, after: np.ndarray, bins: int, out: Path, title: str
) -> Path:
    """Reliability diagram: observed pneumonia rate per probability bin, before and after."""
    plt = pyplot()
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    edges = np.linspace(0, 1, bins + 1)
    for name, probs in (("uncalibrated", before), ("calibrated", after)):
        index = bin_index(probs, bins)
        used = np.unique(index)
        mean_p = [probs[index == b].mean() for b in used]
        rate = [labels[index == b].mean() for b in used]
        ece = expected_calibration_error(labels, probs, bins)
        ax.plot(mean_p, rate, marker="o", label=f"{name} (ECE {ece:.3f})")
        hist.hist(probs, bins=edges, alpha=0.5, label=name)
    ax.set_ylabel("observed PNEUMONIA rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    hist.set_xlabel("predicted probability (bin mean)")
    hist.set_ylabel("images")
    hist.set_yscale("log")
    return save_figure(fig, out)
