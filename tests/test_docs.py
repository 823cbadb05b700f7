"""Every CLI command is documented, and the README's two commands exist in the Makefile."""

import re
from pathlib import Path

import typer
import typer.testing

from hhforecast.cli import app

ROOT = Path(__file__).resolve().parents[1]


def command_paths(typer_app: typer.Typer, prefix: str = "hhforecast") -> list[str]:
    paths = []
    for command in typer_app.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")
        paths.append(f"{prefix} {name}")
    for group in typer_app.registered_groups:
        paths += command_paths(group.typer_instance, f"{prefix} {group.name}")
    return paths


def test_every_command_appears_in_the_docs() -> None:
    text = (ROOT / "README.md").read_text() + "".join(
        p.read_text() for p in (ROOT / "docs").glob("*.md")
    )
    commands = command_paths(app)
    assert "hhforecast train" in commands and "hhforecast registry list" in commands
    missing = [c for c in commands if c not in text]
    assert not missing, f"commands missing from README.md and docs/: {missing}"


def test_every_command_help_has_an_example() -> None:
    for command in command_paths(app):
        parts = command.split()[1:]
        result = typer.testing.CliRunner().invoke(app, [*parts, "--help"])
        assert result.exit_code == 0, command
        assert "Example: hhforecast" in result.stdout, f"{command} --help shows no example"


def test_readme_commands_are_make_targets() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", readme, flags=re.MULTILINE):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), target
