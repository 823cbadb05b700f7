import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from hhforecast.config import load_settings
from hhforecast.errors import (
    RegistryCorruptError,
    RegistryError,
    VersionExistsError,
    VersionNotFoundError,
)
from hhforecast.registry.store import Registry, check_version_name

ORIGINAL = {
    "versions": [
        {
            "version": "20240226",
            "trained_at": "2024-02-26T10:00:00",
            "path": "models/20240226",
            "dataset": "data/hh_semanal.csv",
            "metrics_5features": {"MAE": 90.1, "RMSE": 120.5, "R2": 0.61},
            "metrics_4features": {"mae": 95.0, "rmse": 130.2, "R²": 0.55},
        },
        {
            "version": "1.0.0",
            "trained_at": "2024-03-01T09:00:00",
            "path": "models/1.0.0",
            "dataset": "data/hh_semanal.csv",
            "metrics_5features": {"MAE": 80.0, "RMSE": 110.0, "R2": 0.7},
            "metrics_4features": {"MAE": 85.0, "RMSE": 115.0, "R2": 0.66},
        },
    ]
}


def registry_at(root: Path, production: str = "latest") -> Registry:
    (root / "config.yaml").write_text(f'mlops:\n  production_version: "{production}"\n')
    return Registry(load_settings(root / "config.yaml"))


def publish_fake(registry: Registry, version: str | None, force: bool = False):
    with registry.staging_dir() as staging:
        (staging / "model_metadata.json").write_text("{}")
        return registry.publish(
            staging,
            version,
            {"trained_at": "now", "dataset": "d.csv", "metrics_5features": {"RMSE": 1.0}},
            force=force,
        ).entry


def test_reads_the_original_format(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "registry.json").write_text(json.dumps(ORIGINAL))
    registry = registry_at(tmp_path)
    versions = registry.versions()
    assert [v.version for v in versions] == ["20240226", "1.0.0"]
    assert versions[0].metrics["4features"] == {"MAE": 95.0, "RMSE": 130.2, "R2": 0.55}
    assert versions[0].dataset == "data/hh_semanal.csv"
    assert registry.production_version().version == "1.0.0"  # "latest" = newest entry
    assert registry_at(tmp_path, "20240226").production_version().version == "20240226"


def test_a_named_production_version_that_is_missing_is_an_error(tmp_path: Path) -> None:
    registry = registry_at(tmp_path, "9.9.9")
    publish_fake(registry, "1.0.0")
    with pytest.raises(VersionNotFoundError, match=r"version '9\.9\.9' \(named by mlops"):
        registry.production_version()


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "", "x" * 65, "latest", "a b"])
def test_unsafe_version_names_are_refused(name: str) -> None:
    with pytest.raises(RegistryError, match=r"not a valid version name|is reserved"):
        check_version_name(name)


def test_default_names_are_dated_and_distinct(tmp_path: Path) -> None:
    registry = registry_at(tmp_path)
    today = date.today().strftime("%Y%m%d")
    first = publish_fake(registry, None)
    second = publish_fake(registry, None)
    assert (first.version, second.version) == (today, f"{today}-2")
    assert (tmp_path / "models" / today / "model_metadata.json").is_file()
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".staging")]


def test_existing_version_refused_unless_forced_and_production_never(tmp_path: Path) -> None:
    registry = registry_at(tmp_path, "1.0.0")
    publish_fake(registry, "1.0.0")
    publish_fake(registry, "2.0.0")
    with pytest.raises(VersionExistsError, match=r"already exists.*--force"):
        publish_fake(registry, "2.0.0")
    publish_fake(registry, "2.0.0", force=True)
    assert [v.version for v in registry.versions()] == ["1.0.0", "2.0.0"]
    with pytest.raises(VersionExistsError, match="in production and is never overwritten"):
        publish_fake(registry, "1.0.0", force=True)


def test_corrupt_registry_is_reported_and_left_untouched(tmp_path: Path) -> None:
    registry = registry_at(tmp_path)
    registry.path.parent.mkdir(parents=True)
    registry.path.write_text('{"versions": [')
    with pytest.raises(RegistryCorruptError, match=r"is corrupt .*not valid JSON"):
        publish_fake(registry, "1.0.0")
    assert registry.path.read_text() == '{"versions": ['
    assert not (tmp_path / "models" / "1.0.0").exists()


def test_a_failing_registry_write_leaves_old_registry_and_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = registry_at(tmp_path)
    publish_fake(registry, "1.0.0")
    before = registry.path.read_bytes()
    real_replace = os.replace

    def crash_on_registry(src, dst):
        if str(dst).endswith("registry.json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_registry)
    with pytest.raises(OSError, match="disk full"):
        publish_fake(registry, "2.0.0")
    monkeypatch.undo()
    assert registry.path.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "1.0.0",
        "registry.json",
        "registry.json.lock",
    ]


WRITER = """
import sys
from pathlib import Path
from hhforecast.config import load_settings
from hhforecast.registry.store import Registry
registry = Registry(load_settings(Path(sys.argv[1])))
prefix = sys.argv[2]
for i in range(int(sys.argv[3])):
    with registry.staging_dir() as staging:
        (staging / "model_metadata.json").write_text("{}")
        registry.publish(staging, f"{prefix}-{i}", {"trained_at": "t", "dataset": "d"})
    print(i, flush=True)
"""


def test_killed_writer_never_leaves_a_corrupt_registry(tmp_path: Path) -> None:
    registry_at(tmp_path)
    for delay in (0.3, 0.5, 0.8):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "config.yaml"), f"k{delay}", "100000"],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one entry written
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = json.loads((tmp_path / "models" / "registry.json").read_text())
        names = [v["version"] for v in data["versions"]]
        assert len(names) == len(set(names)) >= 1
        for name in names:  # every registered version has its folder
            assert (tmp_path / "models" / name / "model_metadata.json").is_file()


def _publish_many(config: str, prefix: str, count: int) -> None:
    registry = Registry(load_settings(Path(config)))
    for i in range(count):
        publish_fake(registry, f"{prefix}-{i}")


def test_parallel_writers_lose_no_entry(tmp_path: Path) -> None:
    registry_at(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_publish_many, args=(str(tmp_path / "config.yaml"), f"p{n}", 15))
        for n in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = json.loads((tmp_path / "models" / "registry.json").read_text())
    assert sorted(v["version"] for v in data["versions"]) == sorted(
        f"p{n}-{i}" for n in range(4) for i in range(15)
    )
