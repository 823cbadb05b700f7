"""Conventions every command keeps, checked on the whole command tree: --config, --dayfirst where
a data file is read, --output (never --out), an example in --help, no type names a user cannot
act on, and a place in docs/commands.md. Then where the settings come from when a command runs
in a subfolder of the project."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from hhforecast.cli import app

from .conftest import Project

ROOT = Path(__file__).resolve().parents[1]

WRITTEN = {"--output", "--report", "--raw", "--config"}
"""Path options a command writes to (or reads its settings from): every other one is data."""


def leaf_commands(command: Any = None, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Every command that runs (not a group), as ('hhforecast registry list', click command)."""
    command = command or typer.main.get_command(app)
    children = getattr(command, "commands", None)
    if not children:
        return [(" ".join(("hhforecast", *path)), command)]
    found = []
    for name, child in sorted(children.items()):
        found += leaf_commands(child, (*path, name))
    return found


COMMANDS = leaf_commands()
GROUPS = ["", "dataset", "registry", "mlflow"]


def options(command: Any) -> set[str]:
    return {name for p in command.params for name in [*p.opts, *p.secondary_opts]}


def data_options(command: Any) -> list[str]:
    return [
        p.opts[0]
        for p in command.params
        if p.param_type_name == "option"
        and "Path" in str(p.type_descriptor.annotation)
        and p.opts[0] not in WRITTEN
    ]


def help_text(path: str) -> str:
    result = CliRunner().invoke(app, [*path.split()[1:], "--help"], catch_exceptions=False)
    assert result.exit_code == 0, path
    return result.stdout


def test_the_tree_is_walked() -> None:
    names = [name for name, _ in COMMANDS]
    assert {"hhforecast train", "hhforecast registry list", "hhforecast mlflow sync"} <= set(names)
    assert {"hhforecast sample", "hhforecast dataset build", "hhforecast backtest"} <= set(names)
    assert {"hhforecast log compact", "hhforecast registry clear-challenger"} <= set(names)
    assert len(names) == 22


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_takes_config(path: str, command: Any) -> None:
    assert "--config" in options(command), f"{path} has no --config"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_a_command_reading_a_data_file_takes_dayfirst(path: str, command: Any) -> None:
    if data_options(command):
        assert {"--dayfirst", "--no-dayfirst"} <= options(command), (
            f"{path} reads {data_options(command)} but has no --dayfirst"
        )


def test_the_data_file_rule_sees_the_data_options() -> None:
    found = {path: data_options(command) for path, command in COMMANDS}
    assert found["hhforecast backtest"] == ["--dataset"]
    assert found["hhforecast forecast"] == ["--plan"]
    assert found["hhforecast dataset build"] == ["--utilization", "--events"]
    assert found["hhforecast registry list"] == []


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_no_command_shows_out(path: str, command: Any) -> None:
    assert "--out" not in options(command), f"{path}: the option is --output"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_has_an_example_and_no_type_names(path: str, command: Any, columns80) -> None:
    text = help_text(path)
    assert "Example: hhforecast" in text, f"{path} --help shows no example"
    for shown in ("<bool>", "<list[", "list[Path]"):
        assert shown not in text, f"{path} --help shows {shown}"


@pytest.mark.parametrize("group", GROUPS)
def test_group_help_shows_no_type_names(group: str) -> None:
    text = help_text(f"hhforecast {group}".strip())
    assert "<bool>" not in text and "--help" in text


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_is_in_commands_md(path: str, command: Any) -> None:
    assert f"`{path}" in (ROOT / "docs" / "commands.md").read_text(), path


def test_help_keeps_the_glob_of_the_retrain_example(columns80) -> None:
    # The help is markdown: an unescaped '*' would start emphasis and vanish from the example.
    text = " ".join(help_text("hhforecast retrain").split())
    assert "--utilization 'exports/util-*.csv' --events 'exports/ev-*.csv'" in text


def test_repeatable_file_options_show_file(columns80) -> None:
    text = help_text("hhforecast dataset build")
    assert "--utilization" in text and "<file>..." in text


def test_out_is_still_accepted_as_output(tmp_path: Path, cli) -> None:
    old = cli("sample", "--out", "old.csv", "--weeks", "8", "--json")
    equals = cli("sample", "--out=equals.csv", "--weeks", "8", "--json")
    new = cli("sample", "--output", "new.csv", "--weeks", "8", "--json")
    assert [r.exit_code for r in (old, equals, new)] == [0, 0, 0]
    assert json.loads(old.stdout)["path"] == str(tmp_path / "old.csv")
    assert json.loads(equals.stdout)["path"] == str(tmp_path / "equals.csv")
    assert (tmp_path / "old.csv").read_bytes() == (tmp_path / "new.csv").read_bytes()
    # Only where --output exists: elsewhere --out is the unknown option it always was.
    unknown = cli("registry", "list", "--out", "x")
    assert unknown.exit_code == 2 and "No such option: --out" in unknown.stderr


def test_sample_checks_the_config_it_is_given(tmp_path: Path, cli) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("training: {epoch: 3}\n")
    result = cli("sample", "--output", "x.csv", "--weeks", "8", "--config", broken)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {broken}: unknown key 'training.epoch'")
    assert not (tmp_path / "x.csv").exists()


def test_backtest_takes_dayfirst(project: Project, cli) -> None:
    import pandas as pd

    from hhforecast.datasets.weekly import sample_dataset_path

    weekly = pd.read_csv(sample_dataset_path())
    weekly["date"] = pd.to_datetime(weekly["date"]).dt.strftime("%d/%m/%Y")
    weekly.to_csv(project.root / "dmy.csv", index=False)
    args = ["backtest", "--dataset", "dmy.csv", "--folds", "1", "--horizon", "4", "--epochs", "1"]
    result = cli(*args, "--dayfirst", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["folds"] == 1


# Where the settings come from -----------------------------------------------------------------


def test_a_subfolder_of_the_project_uses_the_project_config(
    trained_project: Project, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = trained_project.root / "data"
    data.mkdir()
    monkeypatch.chdir(data)
    result = cli("registry", "list", "--json")
    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.stdout)
    assert listed["registry_file"] == str(trained_project.registry_file.resolve())
    assert [v["version"] for v in listed["versions"]] == ["1.0.0", "1.1.0"]
    assert result.stderr == ""
    assert not (data / "models").exists()


def test_without_a_config_the_defaults_are_said_on_stderr(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch, columns80
) -> None:
    (tmp_path / ".git").mkdir()  # the project's top: the search stops here
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.chdir(data)
    where = data.resolve()
    note = (
        f"Note: no config.yaml in {where} or the folders above it; using the built-in defaults "
        f"(models in {where / 'models'}). Run from the project folder or pass --config FILE.\n"
    )
    text = cli("registry", "list")
    assert text.exit_code == 0
    assert text.stderr == note
    registry = where / "models" / "registry.json"
    assert text.stdout == f"No versions in {registry} yet. Train one: hhforecast train\n"
    scripted = cli("registry", "list", "--json")
    assert scripted.stderr == note
    assert json.loads(scripted.stdout)["versions"] == []


def test_to_dict_gives_a_dict_and_to_json_a_string() -> None:
    """One convention for every result object: `to_dict()` returns a dict (what --json prints),
    `to_json()` a JSON string (the registry document)."""
    import importlib
    import inspect
    import pkgutil

    import hhforecast

    seen: dict[str, list[str]] = {"to_dict": [], "to_json": []}
    for info in pkgutil.walk_packages(hhforecast.__path__, "hhforecast."):
        if info.name.startswith(("hhforecast.tracking.pyfunc", "hhforecast.__main__")):
            continue  # needs the MLflow extra / runs the CLI
        module = importlib.import_module(info.name)
        for name, cls in vars(module).items():
            if not inspect.isclass(cls) or cls.__module__ != info.name:
                continue
            for method in ("to_dict", "to_json"):
                if method in vars(cls):
                    returned = inspect.signature(getattr(cls, method)).return_annotation
                    seen[method].append(f"{name}: {returned}")
    assert seen["to_dict"] and all(": dict[" in s for s in seen["to_dict"]), seen["to_dict"]
    assert all(s.endswith(": str") for s in seen["to_json"]), seen["to_json"]
