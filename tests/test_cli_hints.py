"""A missing file is named with a hint that fits the command (no option it does not have)."""

from __future__ import annotations

from pathlib import Path

from hhforecast.watch.prediction_log import PredictionLog, PredictionRecord

from .conftest import Project, write_config


def one_line(stderr: str) -> str:
    return " ".join(stderr.split())


def test_predict_with_a_missing_input_does_not_suggest_dataset(
    trained_project: Project, cli
) -> None:
    result = cli("predict", "--input", "weeks.csv", "--output", "scored.csv")
    assert result.exit_code == 2
    assert one_line(result.stderr) == "Error: dataset weeks.csv: no such file. Check the path."


def test_monitor_with_missing_actuals_does_not_suggest_dataset(project: Project, cli) -> None:
    log = PredictionLog.from_settings(project.settings)
    log.record([PredictionRecord("1.0.0", "5features", {"acft": 250.0}, 1000.0, week="2024-01-01")])
    log.close()
    result = cli("monitor", "--actuals", "realised.csv")
    assert result.exit_code == 2
    assert one_line(result.stderr) == "Error: dataset realised.csv: no such file. Check the path."


def test_train_names_the_config_key_when_paths_dataset_is_missing(tmp_path: Path, cli) -> None:
    config = write_config(tmp_path, paths={"dataset": "data/weekly.csv"})
    result = cli("train", "--config", config)
    assert result.exit_code == 2
    assert one_line(result.stderr) == (
        f"Error: dataset {tmp_path / 'data' / 'weekly.csv'}: no such file. It is paths.dataset "
        f"in {config}: fix it there, or pass --dataset FILE."
    )
