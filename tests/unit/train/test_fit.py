"""Which weights a training phase keeps: the last epoch's, or the best val AUC's."""

from __future__ import annotations

import keras
import numpy as np

from pipeline.settings import TrainConfig
from pipeline.train.fit import TrainedModel, _fit
from pipeline.train.models import compile_model


class RecordWeights(keras.callbacks.Callback):
    """The model's weights at the end of every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[np.ndarray]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seen.append([w.copy() for w in self.model.get_weights()])


def fit_phases(keep_best: bool) -> tuple[TrainedModel, RecordWeights]:
    """Two phases of 4 epochs on noise, so val AUC wanders and its best is rarely the last."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 2, 64).astype("float32")
    val = (rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, 32).astype("float32"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    compile_model(model, 0.5)
    trained, watch = TrainedModel("resnet", model), RecordWeights()
    cfg = TrainConfig(batch_size=16, patience=99)
    for phase in ("head", "fine_tune"):
        _fit(model, (x, y), val, 4, cfg, None, trained, phase, 64, [watch], keep_best=keep_best)
    return trained, watch


def same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def test_last_keeps_the_final_epochs_weights_and_says_so() -> None:
    trained, watch = fit_phases(keep_best=False)
    assert trained.epochs == {"head": 4, "fine_tune": 4}
    assert trained.kept_epoch == 8
    assert same_weights(trained.model.get_weights(), watch.seen[-1])


def test_best_restores_the_best_val_auc_epoch_of_the_last_phase() -> None:
    trained, watch = fit_phases(keep_best=True)
    fine_tune_auc = trained.history["val_auc"][4:]
    best = 4 + int(np.argmax(fine_tune_auc)) + 1
    assert best != 8, "the noise should not peak at the last epoch: pick another seed"
    assert trained.kept_epoch == best
    assert same_weights(trained.model.get_weights(), watch.seen[best - 1])
