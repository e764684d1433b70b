"""Labelled local films weigh a fixed share of training; class weights multiply in."""

import numpy as np
import pandas as pd

from pipeline.train.inputs import SplitData, row_weights


def split(origins: list[str], labels: list[int]) -> SplitData:
    rows = pd.DataFrame({"origin": origins})
    return SplitData(rows, [""] * len(origins), np.array(labels, np.float32))


def test_local_films_reach_their_share_and_never_count_less_than_once() -> None:
    train = split(["dataset"] * 90 + ["labeled"] * 10, [0, 1] * 50)
    weights = row_weights(train, None, 0.25)
    local = train.rows["origin"] == "labeled"
    assert weights[local.to_numpy()].sum() / weights.sum() == np.float32(0.25)
    many = split(["dataset"] * 10 + ["labeled"] * 90, [0, 1] * 50)
    assert np.all(row_weights(many, None, 0.25) == 1.0)  # already more than the share


def test_class_weights_multiply_and_no_local_films_means_no_row_weights() -> None:
    train = split(["dataset"] * 3 + ["labeled"], [0, 1, 1, 1])
    weights = row_weights(train, {0: 2.0, 1: 0.5}, 0.5)
    assert list(weights) == [2.0, 0.5, 0.5, 0.5 * 3]
    assert row_weights(split(["dataset"] * 4, [0, 1, 0, 1]), {0: 1.0, 1: 1.0}, 0.25) is None
    legacy = SplitData(pd.DataFrame({"path": ["a"]}), ["a"], np.array([1.0], np.float32))
    assert row_weights(legacy, None, 0.25) is None  # manifests from before `origin`
