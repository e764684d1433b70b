"""The one redaction rule: secret-named variables and URI passwords never reach an output."""

from __future__ import annotations

import logging
import sys

import pytest

from pipeline.redact import MASK, RedactingFilter, redact, redact_logs, secret_values
from pipeline.settings import SettingsError, load_settings

ENV = {
    "PNEUMO_S3_SECRET_KEY": "s3-secret-4e1f",
    "PNEUMO_S3_ACCESS_KEY": "access-9c2b",
    "MLFLOW_TRACKING_URI": "http://admin:p%40ss-77aa@mlflow:5000",
    "PREFECT_API_AUTH_STRING": "admin:prefect-5d3c",
    "PNEUMO_PROFILE": "tiny",
    "PNEUMO_SHORT_TOKEN": "ab",
}


def test_secret_values_are_named_secrets_and_uri_passwords_decoded_too() -> None:
    assert secret_values(ENV) == {
        "s3-secret-4e1f",
        "access-9c2b",
        "admin:prefect-5d3c",
        "prefect-5d3c",
        "p%40ss-77aa",
        "p@ss-77aa",
    }  # "tiny" is no secret; "ab" is too short to mask without blanking ordinary text


def test_redact_masks_uri_passwords_even_of_unknown_uris() -> None:
    text = "cannot reach postgresql://mlflow:hunter2-db@db:5432/mlflow (p@ss-77aa)"
    clean = redact(text, secret_values(ENV))
    assert clean == f"cannot reach postgresql://mlflow:{MASK}@db:5432/mlflow ({MASK})"
    assert redact("see https://example.org/a:b@c", ()) == "see https://example.org/a:b@c"


def test_a_log_record_and_its_traceback_are_redacted() -> None:
    secrets = secret_values(ENV)
    try:
        raise ConnectionError("refused: http://admin:p%40ss-77aa@mlflow:5000 key s3-secret-4e1f")
    except ConnectionError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "uri %s", ("access-9c2b",), sys.exc_info()
        )
    RedactingFilter(secrets).filter(record)
    shown = logging.Formatter().format(record)
    assert "ConnectionError" in shown and "uri ***" in shown
    assert not any(secret in shown for secret in secrets)


def test_redact_logs_filters_every_handler_once() -> None:
    handler = logging.StreamHandler()
    logger = logging.getLogger("pneumo-test-redact")
    logger.addHandler(handler)
    try:
        redact_logs({"first-secret"})
        redact_logs({"second-secret"})
        filters = [f for f in handler.filters if isinstance(f, RedactingFilter)]
        assert len(filters) == 1 and filters[0].secrets == {"second-secret"}
    finally:
        logger.removeHandler(handler)


def test_a_bad_setting_names_the_variable_and_shows_no_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PNEUMO_STORAGE", "s3")
    monkeypatch.setenv("PNEUMO_S3_ACCESS_KEY", "access-9c2b")
    monkeypatch.setenv("PNEUMO_S3_SECRET_KEY", "s3-secret-4e1f")
    monkeypatch.setenv("PNEUMO_SPLIT__SEED", "not-a-number")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert "PNEUMO_SPLIT__SEED='not-a-number'" in message
    monkeypatch.setenv("PNEUMO_SPLIT__SEED", "1")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert "PNEUMO_S3_ENDPOINT" in message
    assert "access-9c2b" not in message and "s3-secret-4e1f" not in message


def test_an_error_holding_a_secret_is_reraised_masked_with_its_cause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.redact import RedactedError, redacting

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-5678-x")

    @redacting
    def leaky() -> None:
        raise ConnectionError("login pw-5678-x refused at http://a:b-1234@host")

    @redacting
    def plain() -> None:
        raise ValueError("bad input")

    with pytest.raises(RedactedError) as raised:
        leaky()
    assert str(raised.value) == "ConnectionError: login *** refused at http://a:***@host"
    assert isinstance(raised.value.__cause__, ConnectionError)
    with pytest.raises(ValueError, match="bad input"):
        plain()


def test_what_is_written_straight_to_stdout_is_redacted(monkeypatch, capsys) -> None:
    from pipeline.redact import RedactingStream, redact_streams

    monkeypatch.setattr(sys, "stdout", sys.stdout)  # both restored after the test
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    redact_streams({"pw-9876-y"})
    redact_streams({"pw-9876-y"})  # idempotent: one wrapper
    assert isinstance(sys.stdout, RedactingStream)
    assert not isinstance(sys.stdout.inner, RedactingStream)
    sys.stdout.write("View run at http://admin:pw-9876-y@mlflow:5000/#/runs/1\n")
    assert capsys.readouterr().out == "View run at http://admin:***@mlflow:5000/#/runs/1\n"
