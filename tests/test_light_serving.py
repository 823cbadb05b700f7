"""Serving and predicting never import TensorFlow or Keras: the weights are read with h5py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd

from hhforecast.datasets.weekly import sample_dataset_path

from .conftest import Project
from .test_serve_e2e import WEEK, start_server, stop_server

HEAVY = ("tensorflow", "keras", "sklearn")

SCRIPT = """
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from hhforecast.cli import app
from hhforecast.config import load_settings
from hhforecast.modeling.predict import load_model
from hhforecast.serving.app import create_app

settings = load_settings(Path(sys.argv[1]))
model = load_model(settings, "1.0.0", "4features")
forward = model.predict(model.reference_rows()).tolist()
app(["predict", "--input", sys.argv[2], "--output", sys.argv[3], "--config", sys.argv[1]],
    standalone_mode=False)
client = TestClient(create_app(settings, follow_production=False))
answer = client.post("/api/predict", json=json.loads(sys.argv[4])).json()
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[5].split(",")))
print(json.dumps({"heavy": heavy, "forward": forward, "answer": answer}))
"""


def test_loading_predicting_and_serving_import_no_tensorflow(
    trained_project: Project, tmp_path: Path
) -> None:
    weeks = tmp_path / "weeks.csv"
    pd.read_csv(sample_dataset_path()).tail(4).drop(columns=["HH"]).to_csv(weeks, index=False)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(trained_project.config),
            str(weeks),
            str(tmp_path / "scored.csv"),
            json.dumps(WEEK),
            ",".join(HEAVY),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=trained_project.root,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert len(result["forward"]) == 3 and result["answer"]["model_version"] == "1.1.0"
    assert len(pd.read_csv(tmp_path / "scored.csv")) == 4


def test_a_real_serve_worker_maps_no_tensorflow_library(trained_project: Project) -> None:
    server = start_server(trained_project)
    try:
        assert httpx.post(f"{server.url}/api/predict", json=WEEK).status_code == 200
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert "python" in maps  # the file lists the process's libraries
        assert "tensorflow" not in maps and "libtensorflow" not in maps
    finally:
        stop_server(server)
