"""MkDocs hooks: the reference pages' tables generated from the code, so they cannot drift.

`<!-- cli-reference -->` becomes every `pneumo` command (from the Typer app: usage, help, its
options); `<!-- settings-table -->` every `PNEUMO_*` setting (from the pydantic models in
`pipeline/settings.py`: type, default, and the field's description or the comment above it).
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, for `mkdocs build`


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", cli_reference())
    if "<!-- settings-table -->" in markdown:
        markdown = markdown.replace("<!-- settings-table -->", settings_table())
    return markdown


def cli_reference() -> str:
    import typer

    from flows.cli import app

    root = typer.main.get_command(app)
    lines: list[str] = []

    def walk(command, path: list[str]) -> None:
        """The command's section; a group's global options first, then each subcommand."""
        if hasattr(command, "commands") and len(path) > 1:
            for name in sorted(command.commands):
                walk(command.commands[name], [*path, name])
            return
        context = command.context_class(command, info_name=" ".join(path))
        lines.extend([f"## `{' '.join(path)}`", "", f"```\n{command.get_usage(context)}\n```", ""])
        lines.extend([inspect.cleandoc(command.help or ""), ""])
        options = [p for p in command.params if p.name != "help"]
        if options:
            lines.extend(["| argument or option | help |", "| --- | --- |"])
            for param in options:
                names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
                text = " ".join((getattr(param, "help", None) or "").split())
                lines.append(f"| {names} | {cell(text)} |")
            lines.append("")
        if hasattr(command, "commands"):  # the root: its options hold for every command
            for name in sorted(command.commands):
                walk(command.commands[name], [*path, name])

    walk(root, ["pneumo"])
    return "\n".join(lines)


def cell(text: str) -> str:
    """`text` inside a Markdown table cell."""
    return text.replace("|", "\\|")


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """The comment lines right above each field of `model`'s class body."""
    source = inspect.getsource(model)
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#"):
                above.insert(0, lines[row].strip().lstrip("# "))
                row -= 1
            found[node.target.id] = " ".join(above)
    return found


def nested_model(kind: object) -> type[BaseModel] | None:
    """The settings group a field holds (`TrainConfig | None` included), else None."""
    for candidate in (kind, *getattr(kind, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def settings_table() -> str:
    import os

    from pipeline.settings import Settings

    rows = ["| variable | type | default | meaning |", "| --- | --- | --- | --- |"]
    # The defaults as a user without PNEUMO_* variables gets them (train: the default profile).
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("PNEUMO_")}
    try:
        defaults = Settings()
    finally:
        os.environ.update(saved)

    def walk(model: type[BaseModel], prefix: str, values: BaseModel) -> None:
        comments = field_comments(model)
        for name, field in model.model_fields.items():
            variable = f"{prefix}{name.upper()}"
            kind = field.annotation
            default = getattr(values, name)
            group = nested_model(kind)
            if group is not None and isinstance(default, BaseModel):
                walk(group, f"{variable}__", default)
                continue
            text = field.description or comments.get(name, "")
            shown = "***" if "Secret" in str(kind) else str(default)
            type_name = getattr(kind, "__name__", str(kind)).replace("typing.", "")
            rows.append(f"| `{variable}` | `{type_name}` | `{cell(shown)}` | {cell(text)} |")

    walk(Settings, "PNEUMO_", defaults)
    return "\n".join(rows)
