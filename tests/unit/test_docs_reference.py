"""The generated reference pages cover every command of the app and every setting."""

from __future__ import annotations

import importlib.util

import typer
from pydantic import BaseModel

from flows.cli import app
from pipeline.settings import Settings
from tests.conftest import REPO


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks


def command_paths(command, path: tuple[str, ...]) -> list[str]:
    """Every leaf command, as `pneumo site accept`."""
    children = getattr(command, "commands", None)
    if not children:
        return [" ".join(path)]
    return [p for name, child in children.items() for p in command_paths(child, (*path, name))]


def setting_variables(model: type[BaseModel], prefix: str) -> list[str]:
    """Every leaf setting, as `PNEUMO_TRAIN__IMAGE_SIZE`."""
    found = []
    for name, field in model.model_fields.items():
        kinds = (field.annotation, *getattr(field.annotation, "__args__", ()))
        group = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
        variable = f"{prefix}{name.upper()}"
        found += setting_variables(group, f"{variable}__") if group else [variable]
    return found


def test_the_command_reference_has_a_section_for_every_command() -> None:
    commands = command_paths(typer.main.get_command(app), ("pneumo",))
    assert len(commands) > 20 and "pneumo site accept" in commands
    page = load_hooks().cli_reference()
    missing = [c for c in commands if f"## `{c}`" not in page]
    assert not missing


def test_the_settings_table_has_a_row_for_every_setting() -> None:
    variables = setting_variables(Settings, "PNEUMO_")
    assert "PNEUMO_TRAIN__IMAGE_SIZE" in variables and "PNEUMO_PACS__URL" in variables
    table = load_hooks().settings_table()
    missing = [v for v in variables if f"| `{v}` |" not in table]
    assert not missing
