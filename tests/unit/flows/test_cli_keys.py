"""`pneumo api-key` and the refusal to serve beyond loopback without keys."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.serve.auth import hash_key, read_key_hashes

runner = CliRunner()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PNEUMO_HOME", str(tmp_path / "home"))
    return tmp_path


def test_a_new_key_is_shown_once_and_only_its_hash_is_kept(home: Path) -> None:
    keys = home / "secrets" / "api-keys"
    result = runner.invoke(app, ["api-key", "new", "--file", str(keys)])
    assert result.exit_code == 0, result.output
    key = re.search(r"the key \(shown only now\): (\S+)", result.output)[1]
    assert read_key_hashes(keys) == {hash_key(key)}
    assert key not in keys.read_text()
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600


def test_serving_beyond_loopback_without_keys_is_refused() -> None:
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "PNEUMO_SERVE_API_KEYS_FILE" in result.output and "--allow-anonymous" in result.output


def test_a_bad_keys_file_stops_serve_before_it_listens(home: Path, monkeypatch) -> None:
    keys = home / "keys"
    keys.write_text("pk_pasted-the-key-itself\n")
    monkeypatch.setenv("PNEUMO_SERVE_API_KEYS_FILE", str(keys))
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert f"API keys file {keys}, line 1: not a key hash" in result.output
