"""The README's tour runs as printed, line by line, in order, on a fresh copy of the project.

Each line runs in bash, exactly as the README prints it, with `hhforecast` on PATH. The copy's
config.yaml is the repository's with fewer epochs and a free port: the lines are not changed.
`. .venv/bin/activate` is the one line not run: the tests already run inside the environment.
`serve` runs as a real process until it answers /api/info, then is stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from .conftest import FAST_TRAINING

ROOT = Path(__file__).resolve().parents[1]
ACTIVATE = ". .venv/bin/activate"
VERDICTS = ("validate", "promote", "retrain", "drift", "monitor", "registry check")
"""Commands whose exit code 1 is a "no" (refused, kept, drift found), as the README says."""


def tour_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert block, "the tour has no ```bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_copy(tmp_path: Path) -> tuple[Path, dict[str, str], int]:
    """The repository's config.yaml and empty models/ in a folder, and an environment whose
    `hhforecast` is the package under test."""
    project = tmp_path / "clone"
    project.mkdir()
    shutil.copytree(ROOT / "models", project / "models")
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["training"].update(FAST_TRAINING)
    port = free_port()
    config.setdefault("serving", {})["port"] = port
    (project / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "hhforecast"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hhforecast "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if k != "HHFORECAST_CONFIG"}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", COLUMNS="80")
    return project, env, port


def serve_briefly(line: str, project: Path, env: dict[str, str], port: int) -> dict:
    server = subprocess.Popen(
        ["bash", "-c", line],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2) as r:
                    return json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"{line!r} did not answer on port {port} within 90 s")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_readme_tour_runs_in_order_as_printed(tmp_path: Path) -> None:
    lines = tour_lines()
    assert lines[0] == ACTIVATE
    commands = lines[1:]
    assert all(line.startswith("hhforecast ") for line in commands), commands
    project, env, port = fresh_copy(tmp_path)
    for line in commands:
        if line.split("#")[0].split() == ["hhforecast", "serve"]:
            info = serve_briefly(line, project, env, port)
            assert info["model_version"]
            continue
        done = subprocess.run(
            ["bash", "-c", line], cwd=project, env=env, capture_output=True, text=True
        )
        verdict = any(line.startswith(f"hhforecast {v} ") for v in VERDICTS)
        allowed = (0, 1) if verdict else (0,)
        assert done.returncode in allowed, f"{line}\n{done.stdout}\n{done.stderr}"
        assert "Error:" not in done.stderr and "Traceback" not in done.stderr, line
    # What the tour promised to make is there.
    for made in ("data/weekly.csv", "data/recent.csv", "scored.csv", "drift.html"):
        assert (project / made).is_file(), made
