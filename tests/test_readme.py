"""The README's tour runs as printed, line by line, in order, in one shell, on a fresh copy of the
project, and leaves the project's tracked files as they were.

Each line runs in the same bash process, exactly as the README prints it (so its `cd` holds for
the lines after it), with `hhforecast` on PATH. The copy is a git repository of the project's
tracked config.yaml, with fewer epochs and a free port: the lines are not changed.
`. .venv/bin/activate` is the one line not run: the tests already run inside the environment.
`serve`, the last line, runs as a real process in the folder the lines before it ended in, until
it answers /api/info, then is stopped.
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
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import hhforecast

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


TOUR_TRAINING = {**FAST_TRAINING, "epochs": 3, "patience": 2}
"""Fewer epochs still than the other tests: the tour checks that the lines run, not scores."""


def git(project: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=tour", "-c", "user.email=tour@example.invalid", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def fresh_copy(tmp_path: Path) -> tuple[Path, dict[str, str], int]:
    """The repository's config.yaml, .gitignore and empty models/ in a folder committed to git,
    and an environment whose `hhforecast` is the package under test."""
    project = tmp_path / "clone"
    project.mkdir()
    shutil.copytree(ROOT / "models", project / "models")
    shutil.copy2(ROOT / ".gitignore", project / ".gitignore")
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["training"].update(TOUR_TRAINING)
    port = free_port()
    config.setdefault("serving", {})["port"] = port
    (project / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "the project as cloned")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "hhforecast"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m hhforecast "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if k != "HHFORECAST_CONFIG"}
    # The package under test, wherever the lines run (a relative PYTHONPATH would not follow).
    source = str(Path(hhforecast.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, env.get("PYTHONPATH", "")) if p)
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", COLUMNS="80", PYTHONPATH=path)
    return project, env, port


def run_in_one_shell(lines: list[str], project: Path, env: dict[str, str]) -> list[Ran]:
    """Run `lines` in one bash process, in order; each line's exit code, output and the folder
    it ended in are kept apart."""
    record = project.parent / "tour-record"
    record.mkdir()
    script = []
    for i, line in enumerate(lines):
        # The closing brace on its own line: a line's trailing comment cannot swallow it.
        script.append(
            f"{{ {line}\n}} >'{record}/{i}.out' 2>'{record}/{i}.err'\n"
            f"echo $? >'{record}/{i}.rc'; pwd >'{record}/{i}.cwd'\n"
        )
    subprocess.run(["bash", "-c", "".join(script)], cwd=project, env=env, check=False)
    return [
        Ran(
            line,
            int((record / f"{i}.rc").read_text()),
            (record / f"{i}.out").read_text(),
            (record / f"{i}.err").read_text(),
            Path((record / f"{i}.cwd").read_text().strip()),
        )
        for i, line in enumerate(lines)
    ]


@dataclass(frozen=True)
class Ran:
    line: str
    returncode: int
    stdout: str
    stderr: str
    cwd: Path


def serve_briefly(line: str, cwd: Path, env: dict[str, str], port: int) -> dict:
    server = subprocess.Popen(
        ["bash", "-c", line],
        cwd=cwd,
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


@pytest.mark.slow  # the suite's longest test: four of its lines import TensorFlow and train
def test_the_readme_tour_runs_in_order_as_printed(tmp_path: Path) -> None:
    lines = tour_lines()
    assert lines[0] == ACTIVATE
    commands = lines[1:]
    assert commands[-1].split("#")[0].split() == ["hhforecast", "serve"]
    project, env, port = fresh_copy(tmp_path)
    ran = run_in_one_shell(commands[:-1], project, env)
    for done in ran:
        verdict = any(done.line.startswith(f"hhforecast {v} ") for v in VERDICTS)
        allowed = (0, 1) if verdict else (0,)
        assert done.returncode in allowed, f"{done.line}\n{done.stdout}\n{done.stderr}"
        assert "Error:" not in done.stderr and "Traceback" not in done.stderr, done.line
    info = serve_briefly(commands[-1], ran[-1].cwd, env, port)
    assert info["model_version"]
    tour = ran[-1].cwd
    assert tour != project and tour.parent == project
    # What the tour promised to make is there, in the tour's own folder.
    for made in ("data/weekly.csv", "data/recent.csv", "scored.csv", "drift.html"):
        assert (tour / made).is_file(), made
    # The weeks after the sample continue its fleet: drift finds nothing there.
    drift = next(done for done in ran if done.line.startswith("hhforecast drift "))
    assert drift.returncode == 0, drift.stdout
    assert "Verdict: no drift" in drift.stdout
    # Every use of the simulated sample says so.
    for done in ran:
        if "--sample" in done.line.split("#")[0]:
            assert "Warning: " in done.stderr and "simulated sample" in done.stderr, done.line
    # promote and rollback rewrote the tour's copy of the config, never the project's.
    assert git(project, "status", "--porcelain", "--untracked-files=no") == ""
    tour_config = yaml.safe_load((tour / "config.yaml").read_text())
    assert tour_config["mlops"]["production_version"] == "1.0.0"  # rolled back to it
