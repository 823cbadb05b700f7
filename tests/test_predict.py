import json
from pathlib import Path

import numpy as np
import pandas as pd

from hhforecast.datasets.weekly import sample_dataset_path
from hhforecast.modeling.predict import load_model, predict_file

from .conftest import Project


def weeks_file(tmp_path: Path, n: int = 5) -> Path:
    path = tmp_path / "weeks.csv"
    pd.read_csv(sample_dataset_path()).tail(n).drop(columns=["HH"]).to_csv(path, index=False)
    return path


def test_predict_file_adds_prediction_interval_and_range_columns(
    trained_project: Project, tmp_path: Path
) -> None:
    source = weeks_file(tmp_path)
    run = predict_file(trained_project.settings, source, tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(out.columns) == [
        *pd.read_csv(source).columns,
        "HH_pred",
        "HH_lower",
        "HH_upper",
        "out_of_range",
    ]
    assert (run.version, run.variant, run.rows) == ("1.1.0", "5features", 5)
    assert (out["HH_lower"] <= out["HH_pred"]).all() and (out["HH_pred"] <= out["HH_upper"]).all()
    assert np.all(np.isfinite(out["HH_pred"]))


def test_out_of_range_features_are_named(trained_project: Project, tmp_path: Path) -> None:
    source = weeks_file(tmp_path, 2)
    frame = pd.read_csv(source)
    frame.loc[0, "age_fleet"] = 1e9
    frame.loc[0, "acft"] = 1
    frame.to_csv(source, index=False)
    run = predict_file(trained_project.settings, source, tmp_path / "out.csv", version="1.0.0")
    assert run.rows_out_of_range >= 1
    assert set(run.frame.loc[0, "out_of_range"].split(";")) == {"acft", "age_fleet"}


def test_named_version_and_variant_are_used(trained_project: Project, tmp_path: Path) -> None:
    source = weeks_file(tmp_path)
    run = predict_file(
        trained_project.settings, source, tmp_path / "o.csv", version="1.0.0", variant="4features"
    )
    model = load_model(trained_project.settings, "1.0.0", "4features")
    x = pd.read_csv(source)[model.features].to_numpy(dtype=float)
    assert np.allclose(run.frame["HH_pred"], model.predict(x), atol=1e-3)
    assert model.features == ["acft", "sum_daily_hours", "Cycles", "sum_uti_mensal"]


def test_cli_predict_and_its_bad_inputs(trained_project: Project, tmp_path: Path, cli) -> None:
    source = weeks_file(tmp_path)
    ok = cli("predict", "--input", source, "--output", tmp_path / "o.csv")
    assert ok.exit_code == 0, ok.stderr
    assert "Wrote 5 predictions" in ok.stdout and "version 1.1.0" in ok.stdout

    broken = tmp_path / "broken.csv"
    pd.read_csv(source).drop(columns=["Cycles"]).to_csv(broken, index=False)
    missing = cli("predict", "--input", broken, "--output", tmp_path / "x.csv")
    assert missing.exit_code == 2
    assert "missing column(s) Cycles" in missing.stderr
    assert not (tmp_path / "x.csv").exists()

    unknown = cli("predict", "--input", source, "--output", tmp_path / "x.csv", "--version", "7")
    assert unknown.exit_code == 2
    assert "version '7' is not in the registry" in unknown.stderr

    variant = cli("predict", "--input", source, "--output", tmp_path / "x.csv", "--variant", "3f")
    assert variant.exit_code == 2
    assert "has no variant '3f'" in variant.stderr


def test_a_version_from_the_original_system_is_listed_but_not_used(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    # The original system's folder: the same artifact names, a metadata file of its own shape.
    folder = trained_project.models / "1.1.0"
    (folder / "model_metadata.json").write_text(
        json.dumps(
            {
                "version": "1.1.0",
                "trained_at": "2024-02-26T10:00:00",
                "dataset": "dados_semanais.csv",
                "metrics_5features": {"MAE": 200.0, "RMSE": 260.0, "R2": 0.4},
                "metrics_4features": {"MAE": 210.0, "RMSE": 270.0, "R2": 0.3},
            }
        )
    )
    # ... and an entry of the original's shape, which records no metadata checksum.
    registry = json.loads(trained_project.registry_file.read_text())
    registry["versions"][1].pop("metadata_sha256")
    trained_project.registry_file.write_text(json.dumps(registry))
    listed = cli("registry", "list", "--config", trained_project.config)
    assert listed.exit_code == 0 and "1.1.0" in listed.stdout

    source = weeks_file(tmp_path)
    used = cli("predict", "--input", source, "--output", tmp_path / "o.csv")
    assert used.exit_code == 1
    assert "1.1.0 was not trained by hhforecast" in used.stderr
    assert "hhforecast train --dataset FILE --version NEW" in used.stderr
    assert "Traceback" not in used.stderr and not (tmp_path / "o.csv").exists()

    checked = cli("validate", "1.1.0")
    assert checked.exit_code == 1
    assert "not trained by hhforecast" in checked.stdout + checked.stderr

    # The versions hhforecast trained are still used when asked for.
    older = cli("predict", "--input", source, "--output", tmp_path / "o.csv", "--version", "1.0.0")
    assert older.exit_code == 0, older.stderr
