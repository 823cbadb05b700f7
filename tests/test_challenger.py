"""The challenger: named, shown, recorded, cleared; never production; mirrored to MLflow."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from hhforecast.gate.challenger import clear_challenger, name_challenger
from hhforecast.gate.promote import promote
from hhforecast.registry.store import Registry

from .conftest import Project


def history(project: Project) -> list[tuple[str, str | None, str]]:
    data = json.loads(project.registry_file.read_text())
    return [(h["action"], h["from"], h["to"]) for h in data["history"]]


def test_promote_challenger_names_it_and_clear_challenger_clears_it(
    trained_project: Project, cli
) -> None:
    project = trained_project
    promote(project.settings, "1.0.0")
    config_before = project.config.read_bytes()
    named = cli("promote", "1.1.0", "--challenger", "--reason", "try it", "--json")
    assert named.exit_code == 0, named.stderr
    out = json.loads(named.stdout)
    assert out["challenger_version"] == "1.1.0" and out["changed"] is True
    assert out["history_entry"]["action"] == "challenger"
    assert project.config.read_bytes() == config_before  # production did not move
    assert json.loads(project.registry_file.read_text())["challenger"] == "1.1.0"

    listing = json.loads(cli("registry", "list", "--json").stdout)
    assert listing["production_version"] == "1.0.0"
    assert listing["challenger_version"] == "1.1.0"
    shown = json.loads(cli("registry", "show", "1.1.0", "--json").stdout)
    assert shown["challenger"] is True and shown["production"] is False

    again = cli("promote", "1.1.0", "--challenger")
    assert again.exit_code == 0
    assert again.stdout.strip() == "1.1.0 is already the challenger; nothing was changed."

    cleared = cli("registry", "clear-challenger", "--reason", "done")
    assert cleared.exit_code == 0
    assert cleared.stdout.strip() == "Cleared the challenger 1.1.0: production forecasts alone."
    assert "challenger" not in json.loads(project.registry_file.read_text())
    assert history(project)[-2:] == [
        ("challenger", None, "1.1.0"),
        ("clear-challenger", "1.1.0", "1.1.0"),
    ]
    nothing = cli("registry", "clear-challenger")
    assert nothing.stdout.strip() == "There is no challenger; nothing was changed."


def test_the_production_version_cannot_be_the_challenger(trained_project: Project, cli) -> None:
    project = trained_project
    promote(project.settings, "1.0.0")
    before = project.registry_file.read_bytes()
    result = cli("promote", "1.0.0", "--challenger")
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == (
        "Error: 1.0.0 is the production version; a challenger is judged against production, so "
        "it must be another version. Train one, then name it: hhforecast promote NEW_VERSION "
        "--challenger"
    )
    assert project.registry_file.read_bytes() == before


def test_a_damaged_version_is_never_named_challenger(trained_project: Project, cli) -> None:
    project = trained_project
    promote(project.settings, "1.0.0")
    model = project.models / "1.1.0" / "model_hh_semanal_5features.keras"
    with model.open("ab") as handle:
        handle.write(b"\0")
    before = project.registry_file.read_bytes()
    result = cli("promote", "1.1.0", "--challenger")
    assert result.exit_code == 1
    assert "model_hh_semanal_5features.keras changed" in " ".join(result.stderr.split())
    assert project.registry_file.read_bytes() == before


def test_gate_options_do_not_go_with_challenger(trained_project: Project, cli) -> None:
    result = cli("promote", "1.1.0", "--challenger", "--require-better-rmse")
    assert result.exit_code == 2
    assert "--challenger names a version to forecast beside production" in result.stderr


def test_the_challenger_promoted_to_production_stops_being_challenger(
    trained_project: Project,
) -> None:
    project = trained_project
    promote(project.settings, "1.0.0")
    name_challenger(project.settings, "1.1.0")
    promote(project.settings, "1.1.0")
    document = Registry(project.settings).read_document()
    assert document.challenger is None
    assert Registry(project.settings).production_version().version == "1.1.0"
    assert clear_challenger(project.settings).record is None


def test_the_challenger_is_never_removed(trained_project: Project, cli) -> None:
    project = trained_project
    promote(project.settings, "1.0.0")
    name_challenger(project.settings, "1.1.0")
    result = cli("registry", "remove", "1.1.0")
    assert result.exit_code != 0
    assert "it is the challenger; clear it first" in " ".join(result.stderr.split())
    assert (project.models / "1.1.0").is_dir()


def many_versions(project: Project, count: int) -> None:
    """`count` registry entries (copies of 1.0.0's entry under new names)."""
    data = json.loads(project.registry_file.read_text())
    first = data["versions"][0]
    data["versions"] = [
        {**first, "version": f"0.{i}.0", "path": f"models/0.{i}.0"} for i in range(count)
    ] + data["versions"]
    project.registry_file.write_text(json.dumps(data))


def test_registry_list_shows_the_newest_and_the_versions_that_matter(
    trained_project: Project, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = trained_project
    promote(project.settings, "1.0.0")
    name_challenger(project.settings, "1.1.0")
    many_versions(project, 1000)
    promote(project.settings, "1.1.0")  # clears the challenger; rollback goes to 1.0.0
    opened: Counter[str] = Counter()
    real_open = io.open

    def counting(file, mode="r", *args, **kwargs):
        if isinstance(file, str | os.PathLike):
            opened[Path(file).parent.name] += 1
        return real_open(file, mode, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(io, "open", counting)
        listing = json.loads(cli("registry", "list", "--json", "--limit", "3").stdout)
    assert listing["versions_total"] == 1002 and listing["versions_hidden"] == 999
    assert [v["version"] for v in listing["versions"]] == ["0.999.0", "1.0.0", "1.1.0"]
    assert listing["rollback_version"] == "1.0.0" and listing["production_version"] == "1.1.0"
    assert not [name for name in opened if name not in ("models", project.root.name)], opened
    every = json.loads(cli("registry", "list", "--json", "--all").stdout)
    assert len(every["versions"]) == 1002
    table = cli("registry", "list")
    assert "982 older versions not shown: --all shows them." in " ".join(table.stdout.split())
