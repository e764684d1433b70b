"""Multi-device training: the MirroredStrategy path, run on two logical CPU devices.

Logical devices must be set before TensorFlow starts, so the check runs in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, tiny_subset

pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from pipeline.settings import Settings
from pipeline.train.fit import distribution_strategy, train_cnn
from pipeline.train.inputs import PreparedData, SplitData, predict_files

def split(name):
    files = sorted(Path(sys.argv[1], name).glob("*/*.jpeg"))
    labels = np.array([f.parent.name == "PNEUMONIA" for f in files], np.float32)
    return SplitData(None, [str(f) for f in files], labels)

settings = Settings(profile="tiny", train={"distribute": sys.argv[2]})
data = PreparedData(split("train"), split("val"), split("val"), None, 0.5)
trained = train_cnn(data, settings.train)
strategy = distribution_strategy(settings.train.distribute)
kernel = next(v for v in trained.model.trainable_variables if "kernel" in v.path)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "variable": type(kernel.value).__name__,
    "epochs": trained.epochs,
    "loss_finite": all(l == l for l in trained.history["loss"]),
    "prediction": float(predict_files(trained.model, data.val.paths)[0]),
}))
"""


@pytest.mark.parametrize(("mode", "replicas"), [("mirrored", 2), ("auto", 1), ("none", 1)])
def test_training_mirrors_over_devices_when_asked(tmp_path, mode: str, replicas: int) -> None:
    data = tiny_subset(tmp_path / "chest_xray", {"train": 6, "val": 3})
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data), mode],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == replicas
    # Under the strategy the model's variables are mirrored across both devices.
    assert ("Mirrored" in result["variable"]) == (replicas == 2), result["variable"]
    assert result["epochs"] == {"fit": 1} and result["loss_finite"]
    assert 0.0 <= result["prediction"] <= 1.0
