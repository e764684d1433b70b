"""The last screen of a training run: the loop when a ResNet champion exists, else why not."""

from flows.output import print_next_steps
from pipeline.train.candidate import ModelSummary


def resnet(weights_source: str, champion_version: str | None, reasons: list[str]) -> ModelSummary:
    return ModelSummary(
        model="pneumonia-resnet", version="3", run_id="r", champion=bool(champion_version),
        champion_version=champion_version, approval="", card_uri="", metrics={}, threshold=0.5,
        calibration="", gate_passed=bool(champion_version), gate_reasons=reasons, collapsed=None,
        image_size=224, weights_source=weights_source, train_images_per_second=1.0,
        train_phases={}, timings={},
    )  # fmt: skip


def test_without_weights_or_champion_the_screen_says_why_and_what_to_do(capsys) -> None:
    print_next_steps(
        resnet("none (imagenet unavailable: no network)", None, ["roc_auc 0.610 < floor 0.750"])
    )
    out = capsys.readouterr().out
    assert "the ResNet trained from random weights, not ImageNet" in out
    assert "PNEUMO_TRAIN__RESNET_WEIGHTS=" in out
    assert "no ResNet champion" in out and "roc_auc 0.610 < floor 0.750" in out
    assert "pneumo promote pneumonia-resnet VERSION" in out


def test_with_a_champion_the_screen_gives_the_next_commands(capsys) -> None:
    print_next_steps(resnet("imagenet", "3", []))
    out = capsys.readouterr().out
    assert "pneumonia-resnet v3 is champion" in out
    for command in ("pneumo serve", "pneumo predict", "pneumo demo-drift", "pneumo ui"):
        assert command in out
    assert "random weights" not in out


def test_prevalence_and_quality_alerts_say_they_do_not_retrain() -> None:
    from flows.output import signal_lines

    lines = signal_lines(
        {
            "prevalence": {
                "shifted": True,
                "reference_positive_rate": 0.62,
                "current_positive_rate": 0.31,
                "current_band": [0.24, 0.39],
                "p_value": 0.0001,
            },
            "quality": {"alert": False, "rows": 150, "flagged": {"blank (pixel std < 2)": 1}},
        }
    )
    assert lines[0].startswith("ALERT prevalence shift: predicted PNEUMONIA rate 0.310")
    assert "retraining cannot answer a change of class mix" in lines[0]
    assert lines[1] == "data quality: 1 blank (pixel std < 2)"
