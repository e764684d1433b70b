"""What the training benchmarks share: one patient-level split of the full train set, machine facts.

The split is the project's own (ingest, then train/val/test carved by patient), stored in a
state directory that later runs reuse, so every benchmark sees the same images in each split.
"""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path

import tensorflow as tf

from pipeline.adapters.backends import open_store
from pipeline.data.manifest import load_manifest
from pipeline.data.steps import ingest_dataset
from pipeline.settings import Settings, TrainConfig
from pipeline.train.inputs import PreparedData, prepare_data

SHARED = Path(__file__).resolve().parents[2] / "shared"
TRAIN224 = SHARED / "data" / "chest_xray_train224"
WEIGHTS = SHARED / "weights" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
# fp32 peak of the 2-core development machine: 2 cores x 2.3 GHz x 2 AVX-512 FMA units x 16 lanes
# x 2 FLOP per FMA.
PEAK_GFLOPS = 2 * 2.3 * 2 * 16 * 2


def split_data(home: Path, cfg: TrainConfig, source: Path = TRAIN224) -> PreparedData:
    """Ingest `source` into `home` once (re-runs store nothing new) and load its splits."""
    settings = Settings(home=home)
    store = open_store(settings)
    summary = ingest_dataset(source, store, settings)
    _, manifest = load_manifest(store, summary.manifest_id)
    return prepare_data(manifest, store, cfg, settings.cache_dir)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    threads = (
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    )
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"TensorFlow {tf.__version__} (intra/inter-op threads {threads}; 0 = one per core)"
    )
