"""The pretrained ResNet path on real images with the real ImageNet weights (shared file)."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from pipeline.settings import TrainConfig
from pipeline.train.fit import fine_tune, train_resnet
from pipeline.train.inputs import PreparedData, SplitData, predict_files
from pipeline.train.models import BASE_LAYER, HEAD_LAYER, build_augmenter, build_resnet
from pipeline.train.transfer import compute_activations, cut_layer, split_resnet
from tests.conftest import SAMPLE, SHARED_WEIGHTS

pytestmark = pytest.mark.slow

CFG = TrainConfig(
    image_size=64,
    batch_size=8,
    resnet_weights=str(SHARED_WEIGHTS),
    resnet_head_fit="adam",
    resnet_head_epochs=2,
    resnet_finetune_epochs=1,
    resnet_unfreeze_blocks=1,
    resnet_head_features="conv5",
    resnet_feature_views=2,
    patience=5,
)


def split_of(name: str, per_class: int) -> SplitData:
    paths, labels = [], []
    for label, value in (("NORMAL", 0.0), ("PNEUMONIA", 1.0)):
        files = sorted((SAMPLE / name / label).iterdir())[:per_class]
        paths += [str(p) for p in files]
        labels += [value] * len(files)
    return SplitData(rows=None, paths=paths, labels=np.array(labels, np.float32))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data() -> PreparedData:
    if not SHARED_WEIGHTS.is_file():
        pytest.fail(f"the shared ImageNet weights are missing: {SHARED_WEIGHTS}")
    train = split_of("train", 8)
    return PreparedData(train, split_of("val", 4), split_of("test", 4), None, 0.5)


def batchnorm_weights(base: keras.Model) -> list[np.ndarray]:
    """gamma, beta, moving mean and moving variance of every BatchNormalization layer."""
    return [
        w
        for layer in base.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for w in layer.get_weights()
    ]


def test_cut_names_the_block_below_the_unfrozen_ones() -> None:
    assert cut_layer(0) == "conv5_block3_out"
    assert cut_layer(3) == "conv4_block6_out"
    with pytest.raises(ValueError, match=r"unfrozen blocks must be 0\.\.15"):
        cut_layer(16)


def test_pretrained_two_phase_training_keeps_batchnorm_and_matches_the_full_model(
    data: PreparedData,
) -> None:
    keras.utils.set_random_seed(0)
    reference = keras.applications.ResNet50(
        include_top=False, weights=str(SHARED_WEIGHTS), input_shape=(64, 64, 3)
    )
    imagenet_bn = batchnorm_weights(reference)
    frozen_kernel = reference.get_layer("conv2_block1_1_conv").get_weights()[0]
    top_kernel = reference.get_layer("conv5_block3_3_conv").get_weights()[0]

    trained = train_resnet(data, CFG, str(SHARED_WEIGHTS))

    assert trained.weights_source == f"file:{SHARED_WEIGHTS}"
    assert set(trained.phases) == {"cache", "features", "head", "fine_tune"}
    assert len(trained.history["val_auc"]) == 3  # 2 head epochs, 1 fine-tuning epoch
    # BatchNormalization statistics are ImageNet's after both phases; only the top block moved.
    base = trained.model.get_layer(BASE_LAYER)
    after = batchnorm_weights(base)
    assert len(after) == len(imagenet_bn) == 4 * 53
    assert all(np.array_equal(a, b) for a, b in zip(after, imagenet_bn, strict=True))
    np.testing.assert_array_equal(
        base.get_layer("conv2_block1_1_conv").get_weights()[0], frozen_kernel
    )
    assert not np.allclose(base.get_layer("conv5_block3_3_conv").get_weights()[0], top_kernel)

    # The cached parts and the full model are one set of weights: same probabilities.
    parts = split_resnet(trained.model, CFG.resnet_unfreeze_blocks)
    full = predict_files(trained.model, data.test.paths, batch_size=4)
    cached = parts.top.predict(compute_activations(parts.bottom, data.test.paths, 4), verbose=0)
    np.testing.assert_allclose(cached.ravel(), full, atol=1e-5)
    pooled = parts.features.predict(
        compute_activations(parts.bottom, data.test.paths, 4), verbose=0
    )
    np.testing.assert_allclose(parts.head.predict(pooled, verbose=0).ravel(), full, atol=1e-5)
    assert len(np.unique(np.round(full, 4))) > 1  # a trained head, not the constant prior


def test_augmented_views_follow_the_originals(data: PreparedData) -> None:
    model = build_resnet(CFG, str(SHARED_WEIGHTS), 0.5)
    parts = split_resnet(model, 0)
    paths = data.val.paths[:3]
    plain = compute_activations(parts.bottom, paths, 2)
    views = compute_activations(parts.bottom, paths, 2, build_augmenter(CFG.augment, 0), 3)
    assert views.shape == (9, *plain.shape[1:])
    np.testing.assert_allclose(views[:3], plain, atol=1e-5)
    assert not np.allclose(views[3:6], plain, atol=1e-3)


def test_the_default_head_is_the_exact_logistic_solution_on_conv4_and_conv5(
    data: PreparedData,
) -> None:
    from sklearn.linear_model import LogisticRegression

    cfg = TrainConfig(
        image_size=64, batch_size=8, resnet_weights=str(SHARED_WEIGHTS), resnet_finetune_epochs=0
    )
    assert (cfg.resnet_head_fit, cfg.resnet_head_features) == ("logistic", "conv4+conv5")
    trained = train_resnet(data, cfg, str(SHARED_WEIGHTS))
    assert "head" in trained.phases and "fine_tune" not in trained.phases

    parts = split_resnet(trained.model, cfg.resnet_unfreeze_blocks)
    views = len(cfg.resnet_view_crops) + 1
    train = parts.features.predict(
        compute_activations(parts.bottom, data.train.paths, 4, crops=cfg.resnet_view_crops),
        verbose=0,
    )
    assert train.shape == (views * len(data.train.paths), 1024 + 2048)
    # The folded Dense unit gives scikit-learn's own probabilities on standardised features.
    mean, std = train.mean(0), train.std(0) + 1e-6
    labels = np.tile(data.train.labels, views)
    reference = LogisticRegression(C=cfg.resnet_head_c, max_iter=3000).fit(
        (train - mean) / std, labels
    )
    test = parts.features.predict(compute_activations(parts.bottom, data.test.paths, 4), verbose=0)
    full = predict_files(trained.model, data.test.paths, batch_size=4)
    np.testing.assert_allclose(full, reference.predict_proba((test - mean) / std)[:, 1], atol=1e-4)
    assert np.abs(trained.model.get_layer(HEAD_LAYER).get_weights()[0]).max() > 0


def test_a_conv4_head_above_the_cut_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="resnet_unfreeze_blocks >= 3"):
        TrainConfig(resnet_head_features="conv4+conv5", resnet_unfreeze_blocks=1)


def test_a_warm_start_refits_the_head_with_each_rows_weight(data: PreparedData) -> None:
    """Retraining solves the champion's head again on its own features, local films weighted
    as the training data says; with `refit_head` off the head is left as it was."""
    from sklearn.linear_model import LogisticRegression

    cfg = TrainConfig(
        image_size=64, batch_size=8, resnet_weights=str(SHARED_WEIGHTS), resnet_finetune_epochs=0
    )
    champion = train_resnet(data, cfg, str(SHARED_WEIGHTS)).model
    before = champion.get_layer(HEAD_LAYER).get_weights()[0].copy()
    # The first film of each class weighs as the local films of a retrain would.
    weight = np.ones(len(data.train.labels), np.float32)
    weight[[0, len(weight) // 2]] = 20.0
    local = dataclasses.replace(data, train_weight=weight)

    kept = fine_tune(champion, "v1", local, cfg, 0, refit_head=False)
    assert "head" not in kept.phases
    np.testing.assert_array_equal(kept.model.get_layer(HEAD_LAYER).get_weights()[0], before)
    refitted = fine_tune(champion, "v1", local, cfg, 0)
    assert "head" in refitted.phases

    parts = split_resnet(refitted.model, cfg.resnet_unfreeze_blocks)
    views = len(cfg.resnet_view_crops) + 1
    train = parts.features.predict(
        compute_activations(parts.bottom, data.train.paths, 4, crops=cfg.resnet_view_crops),
        verbose=0,
    )
    mean, std = train.mean(0), train.std(0) + 1e-6
    rows = np.tile(weight, views)
    reference = LogisticRegression(C=cfg.resnet_head_c, max_iter=3000).fit(
        (train - mean) / std, np.tile(data.train.labels, views), sample_weight=rows / rows.mean()
    )
    np.testing.assert_allclose(
        refitted.model.get_layer(HEAD_LAYER).get_weights()[0].ravel(),
        reference.coef_[0] / std,
        rtol=1e-3,
        atol=1e-6,
    )
    assert not np.allclose(refitted.model.get_layer(HEAD_LAYER).get_weights()[0], before)
