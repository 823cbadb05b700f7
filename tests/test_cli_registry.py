import json
from pathlib import Path

from .conftest import Project, heavy_imports
from .test_registry import ORIGINAL


def test_list_marks_production_and_shows_metrics(trained_project: Project, cli) -> None:
    result = cli("registry", "list", "--config", trained_project.config)
    assert result.exit_code == 0
    assert "1.0.0" in result.stdout and "1.1.0" in result.stdout
    assert "● 1.1.0" in result.stdout and "● = production" in result.stdout
    data = json.loads(cli("registry", "list", "--json", "--config", trained_project.config).stdout)
    assert data["production_version"] == "1.1.0"
    assert [v["version"] for v in data["versions"]] == ["1.0.0", "1.1.0"]


def test_list_and_show_read_the_original_format(tmp_path: Path, cli) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "registry.json").write_text(json.dumps(ORIGINAL))
    listed = cli("registry", "list", "--json")
    assert listed.exit_code == 0
    assert json.loads(listed.stdout)["production_version"] == "1.0.0"
    shown = json.loads(cli("registry", "show", "20240226", "--json").stdout)
    assert shown["metrics_4features"] == {"MAE": 95.0, "RMSE": 130.2, "R2": 0.55}
    table = cli("registry", "list")
    assert "130.2" in table.stdout


def test_show_unknown_version_is_a_clear_error(trained_project: Project, cli) -> None:
    result = cli("registry", "show", "9.9", "--config", trained_project.config)
    assert result.exit_code == 2
    assert "Error: version '9.9' is not in the registry. Known versions: 1.0.0, 1.1.0." in (
        result.stderr.replace("\n", " ")
    )


def test_empty_registry_says_how_to_start(cli) -> None:
    result = cli("registry", "list")
    assert result.exit_code == 0
    assert "hhforecast train" in result.stdout


def test_help_and_registry_list_do_not_import_tensorflow(trained_project: Project) -> None:
    commands = [
        ["--help"],
        ["registry", "list"],
        ["registry", "show", "1.0.0"],
        ["registry", "check"],
    ]
    out = heavy_imports(
        trained_project.root, commands, ("tensorflow", "keras", "pandas", "sklearn")
    )
    assert "HEAVY []" in out, out
