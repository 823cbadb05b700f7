from pathlib import Path

import pytest

from hhforecast.config import CONFIG_ENV, load_settings, nearest_config_file
from hhforecast.errors import ConfigError


def test_defaults_without_any_file(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.source is None
    assert settings.base_dir == tmp_path.resolve()
    assert settings.mlops.production_version == "latest"
    assert settings.registry_file == tmp_path.resolve() / "models" / "registry.json"
    assert settings.training.variants["5features"] == [
        "acft",
        "sum_daily_hours",
        "Cycles",
        "sum_uti_mensal",
        "age_fleet",
    ]


def test_search_order_explicit_then_env_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.yaml").write_text("training: {epochs: 11}\n")
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "c.yaml").write_text("training: {epochs: 22}\n")
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("training: {epochs: 33}\n")

    assert load_settings().training.epochs == 11
    monkeypatch.setenv(CONFIG_ENV, str(env_dir / "c.yaml"))
    assert load_settings().training.epochs == 22
    assert load_settings(explicit).training.epochs == 33


def test_config_yaml_is_found_in_the_folders_above(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.yaml").write_text("paths: {models_dir: store, dataset: data/weekly.csv}\n")
    deep = tmp_path / "data" / "2024"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    settings = load_settings()
    assert settings.source == (tmp_path / "config.yaml").resolve()
    # Relative paths in it stay relative to its own folder, not to where the command runs.
    assert settings.base_dir == tmp_path.resolve()
    assert settings.models_dir == tmp_path.resolve() / "store"
    assert settings.resolve(settings.paths.dataset or "") == tmp_path.resolve() / "data/weekly.csv"


def test_the_search_stops_at_a_folder_holding_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.yaml").write_text("training: {epochs: 11}\n")  # someone else's
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "data").mkdir()
    monkeypatch.chdir(project / "data")
    settings = load_settings()
    assert settings.source is None
    assert settings.base_dir == (project / "data").resolve()
    assert nearest_config_file(project / "data") is None
    assert nearest_config_file(tmp_path / "elsewhere") == tmp_path / "config.yaml"
    (project / "config.yaml").write_text("training: {epochs: 22}\n")
    assert load_settings().training.epochs == 22


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    config = folder / "config.yaml"
    config.write_text("paths: {models_dir: store}\nmlops: {registry_file: store/reg.json}\n")
    settings = load_settings(config)
    assert settings.models_dir == folder.resolve() / "store"
    assert settings.registry_file == folder.resolve() / "store" / "reg.json"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("training:\n  epoch: 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'training\.epoch'"):
        load_settings(config)


def test_wrong_type_is_named(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("training:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"key 'training\.epochs'.*'many'"):
        load_settings(config)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(config)
    with pytest.raises(ConfigError, match="no such file") as missing:
        load_settings(tmp_path / "absent.yaml")
    assert str(missing.value).endswith(
        "absent.yaml: no such file (given with --config). Check the path, or leave --config out."
    )


def test_command_line_overrides_are_validated() -> None:
    settings = load_settings()
    assert settings.with_training(epochs=3).training.epochs == 3
    with pytest.raises(ConfigError, match=r"training\.epochs"):
        settings.with_training(epochs=0)


def test_shipped_config_is_valid() -> None:
    shipped = Path(__file__).resolve().parents[1] / "config.yaml"
    settings = load_settings(shipped)
    assert settings.paths.models_dir == "models"
    assert settings.mlops.registry_file == "models/registry.json"
