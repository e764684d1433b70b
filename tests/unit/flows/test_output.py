"""The last screen of a training run: the loop when a ResNet champion exists, else why not."""

from flows.output import print_next_steps


def test_without_weights_or_champion_the_screen_says_why_and_what_to_do(capsys) -> None:
    print_next_steps(
        {
            "weights_source": "none (imagenet unavailable: no network)",
            "champion_version": None,
            "gate_reasons": ["roc_auc 0.610 < floor 0.750"],
        }
    )
    out = capsys.readouterr().out
    assert "the ResNet trained from random weights, not ImageNet" in out
    assert "PNEUMO_TRAIN__RESNET_WEIGHTS=" in out
    assert "no ResNet champion" in out and "roc_auc 0.610 < floor 0.750" in out
    assert "pneumo promote pneumonia-resnet VERSION" in out


def test_with_a_champion_the_screen_gives_the_next_commands(capsys) -> None:
    print_next_steps({"weights_source": "imagenet", "champion_version": "3", "gate_reasons": []})
    out = capsys.readouterr().out
    assert "pneumonia-resnet v3 is champion" in out
    for command in ("pneumo serve", "pneumo predict", "pneumo demo-drift", "pneumo ui"):
        assert command in out
    assert "random weights" not in out
