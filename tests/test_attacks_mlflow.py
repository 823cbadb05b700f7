"""What a hostile MLflow can do to a `serve --follow-mlflow` replica, tried against one.

The counterpart is tests/hostile_mlflow.py: a tracking server that answers the replica's REST
calls with crafted tags (a version name that climbs out of the cache, pickled scalers with
matching hashes), listings (nested, wide, badly named), bodies (endless, oversized, deeply
nested JSON), redirects and artifact URIs naming another host. Each test fails on a replica
that trusts what it is told. Also here: the pickle opt-in of local versions, and what
`registry check` says about versions the checksums cannot vouch for.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hhforecast.errors import ArtifactError
from hhforecast.tracking.follower import AliasFollower, AliasSource

from .conftest import Project, rerecord, write_config
from .hostile_mlflow import ARTIFACTS, Handler, HostileMlflow
from .test_mlflow_follower import answered_version, wait_for
from .test_serve_e2e import free_port, start_server, stop_server, wait_until
from .test_verified_loading import drop_scaling_numbers, plant, weeks_file

MODEL = "hh5-hostile"
KERAS = "model_hh_semanal_5features.keras"


@pytest.fixture
def stub() -> Iterator[HostileMlflow]:
    server = HostileMlflow().start()
    yield server
    server.stop()


def replica(root: Path, uri: str, mlflow: dict | None = None, **sections: dict) -> Project:
    """A folder with only a config.yaml following `uri` (no models)."""
    root.mkdir(exist_ok=True)
    settings = {
        "tracking_uri": uri,
        "registered_models": {"5features": MODEL, "4features": "hh4-hostile"},
        "timeout_seconds": 2,
        **(mlflow or {}),
    }
    config = write_config(root, mlflow=settings, serving={"reload_poll_seconds": 0.3}, **sections)
    return Project(root=root, config=config)


def follower_of(project: Project) -> AliasFollower:
    """A replica's follower in this process, serving what the alias names now."""
    settings = project.settings
    source = AliasSource(settings)
    target = source.resolve()
    served = source.load(settings, target)
    return AliasFollower(settings, served, source=source, target=target)


def serve_follow(cli, project: Project, *extra: str):  # type: ignore[no-untyped-def]
    port = str(free_port())
    return cli("serve", "--follow-mlflow", "--port", port, "--config", project.config, *extra)


def leftovers(project: Project) -> list[str]:
    cache = project.root / "mlflow-cache"
    return sorted(p.name for p in cache.glob(".download-*")) if cache.exists() else []


# 1. Names from MLflow pass the version-name rule; nothing is written outside the cache.


@pytest.mark.slow
def test_a_version_tag_climbing_out_of_the_cache_is_refused_before_anything_is_touched(
    trained_project: Project, stub: HostileMlflow, tmp_path: Path
) -> None:
    follower = replica(tmp_path / "replica", stub.url)
    victim = follower.root / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    # mlflow-cache/hh5-hostile/v1-../../../victim is the replica's own folder "victim".
    stub.publish("1", trained_project.models / "1.0.0", version="../../../victim")
    command = ["serve", "--follow-mlflow", "--port", str(free_port())]
    done = subprocess.run(
        [sys.executable, "-m", "hhforecast", *command, "--config", str(follower.config)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=follower.root,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(
        f"Error: {MODEL} v1 has a bad hhforecast.version tag: '../../../victim' is not a valid "
        "version name: use letters, digits"
    )
    assert done.stderr.rstrip().endswith("; it is not served")
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    assert (victim / "keep.txt").read_text() == "mine"
    assert not (follower.root / "mlflow-cache" / MODEL).exists()


@pytest.mark.parametrize(
    ("tags", "number", "message"),
    [
        ({"hhforecast.version": "../../../victim"}, "2", "is not a valid version name"),
        ({"hhforecast.version": "latest"}, "2", "'latest' is reserved"),
        ({"hhforecast.version": "a" * 65}, "2", "at most 64 characters"),
        ({}, "2/../../../victim", "not a number"),
        ({"hhforecast.files_sha256": "[" * 50_000}, "2", "carries no valid"),
        (
            {"hhforecast.files_sha256": json.dumps({"model_metadata.json": "../../etc"})},
            "2",
            "is not a list of file SHA-256s",
        ),
        ({"hhforecast.files_sha256": json.dumps({})}, "2", "is not a list of file SHA-256s"),
    ],
    ids=["climbing", "reserved", "long", "number", "nested-files", "bad-digest", "no-metadata"],
)
def test_a_moved_alias_with_a_crafted_tag_keeps_the_old_model_and_writes_nothing(
    trained_project: Project,
    stub: HostileMlflow,
    tmp_path: Path,
    tags: dict[str, str],
    number: str,
    message: str,
) -> None:
    project = replica(tmp_path / "replica", stub.url)
    victim = project.root / "victim"
    victim.mkdir()
    stub.publish("1", trained_project.models / "1.0.0")
    follower = follower_of(project)
    before = sorted(p.relative_to(project.root) for p in project.root.rglob("*"))

    stub.publish("2", trained_project.models / "1.1.0", **tags)
    stub.versions[number] = stub.versions.pop("2")
    stub.production = number
    outcome = follower.check()
    assert outcome.failure is not None and message in outcome.failure.message
    assert follower.failing and follower.current.entry.version == "1.0.0"
    # /api/info's mlflow block still names what is served, not the crafted name.
    assert follower.status()["mlflow"]["version"] == "1.0.0"
    assert follower.status()["mlflow"]["model_version"] == "1"
    assert sorted(p.relative_to(project.root) for p in project.root.rglob("*")) == before


def test_a_cache_folder_that_leads_elsewhere_is_neither_emptied_nor_written(
    trained_project: Project, stub: HostileMlflow, tmp_path: Path
) -> None:
    project = replica(tmp_path / "replica", stub.url)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "v1-1.0.0").mkdir(parents=True)
    (elsewhere / "v1-1.0.0" / "keep.txt").write_text("mine")
    (project.root / "mlflow-cache").mkdir()
    (project.root / "mlflow-cache" / MODEL).symlink_to(elsewhere)
    stub.publish("1", trained_project.models / "1.0.0")
    source = AliasSource(project.settings)
    with pytest.raises(ArtifactError, match=r"outside .*mlflow-cache; check mlflow\.registered"):
        source.fetch(source.resolve())
    assert [p.name for p in (elsewhere / "v1-1.0.0").iterdir()] == ["keep.txt"]
    assert leftovers(project) == [] and stub.seen[-1].path.startswith("/api/2.0/mlflow/regis")


# 2. A pickle is never unpickled by a replica, nor locally unless the user opted in.


def pickled_version(source: Path, folder: Path, marker: Path) -> Path:
    """A copy of `source` as an attacker who writes the artifacts and the tags would make it:
    no scaler numbers, a scaler that is a pickle writing `marker`, every hash matching."""
    shutil.copytree(source, folder)
    drop_scaling_numbers(folder)
    plant(folder, marker)
    rerecord(folder, "scaler_X_5features.joblib", registry=False)
    return folder


@pytest.mark.parametrize("opted_in", [False, True], ids=["default", "opted-in-locally"])
def test_a_replica_never_unpickles_scalers_it_downloads(
    trained_project: Project, stub: HostileMlflow, tmp_path: Path, opted_in: bool
) -> None:
    marker = tmp_path / "pwned"
    hostile = pickled_version(trained_project.models / "1.0.0", tmp_path / "v" / "1.0.0", marker)
    stub.publish("1", hostile)
    mlops = {"allow_pickled_scalers": True} if opted_in else {}
    project = replica(tmp_path / "replica", stub.url, mlops=mlops)
    source = AliasSource(project.settings)
    target = source.resolve()
    with pytest.raises(ArtifactError, match="keeps its scalers only as joblib pickles"):
        source.load(project.settings, target)
    assert not marker.exists()


def test_a_local_pickle_with_its_checksum_removed_does_not_run_and_check_names_it(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    marker = tmp_path / "pwned"
    folder = trained_project.models / "1.0.0"
    drop_scaling_numbers(folder)
    plant(folder, marker)
    rerecord(folder, "scaler_X_5features.joblib", registry=False)
    registry = json.loads(trained_project.registry_file.read_text())
    for entry in registry["versions"]:
        if entry["version"] == "1.0.0":
            del entry["metadata_sha256"]
    trained_project.registry_file.write_text(json.dumps(registry))

    output = tmp_path / "o.csv"
    predicted = cli(
        "predict", "--version", "1.0.0", "--input", weeks_file(tmp_path), "--output", output
    )
    assert predicted.exit_code == 1
    assert predicted.stderr.startswith(
        f"Error: {folder / 'model_metadata.json'}: variant '5features' keeps its scalers only "
        "as joblib pickles"
    )
    assert not marker.exists() and not output.exists()

    checked = cli("registry", "check", "--json")
    assert checked.exit_code == 1
    found = {(f["kind"], f["version"]): f for f in json.loads(checked.stdout)["findings"]}
    assert set(found) == {("no_metadata_sha256", "1.0.0"), ("pickled_scalers", "1.0.0")}
    assert found["pickled_scalers", "1.0.0"]["detail"] == (
        "variant(s) 4features, 5features keep their scalers only as joblib pickles (trained "
        "before they were kept as numbers), so the version is not loaded: train it again, or, "
        "if you trust the folder, set mlops.allow_pickled_scalers: true"
    )
    assert found["no_metadata_sha256", "1.0.0"]["detail"].startswith(
        "its registry entry records no metadata_sha256, so model_metadata.json"
    )
    assert not marker.exists()


def test_a_version_trained_before_scaler_numbers_loads_only_once_opted_in(
    trained_project: Project, tmp_path: Path, cli
) -> None:
    weeks = weeks_file(tmp_path)
    assert (
        cli("predict", "--version", "1.0.0", "--input", weeks, "--output", "a.csv").exit_code == 0
    )
    drop_scaling_numbers(trained_project.models / "1.0.0")  # real joblib scalers, as trained

    refused = cli("predict", "--version", "1.0.0", "--input", weeks, "--output", "b.csv")
    assert refused.exit_code == 1 and "mlops.allow_pickled_scalers: true" in refused.stderr
    assert cli("registry", "check").exit_code == 1

    config = trained_project.config
    config.write_text(config.read_text() + "mlops:\n  allow_pickled_scalers: true\n")
    allowed = cli("predict", "--version", "1.0.0", "--input", weeks, "--output", "b.csv")
    assert allowed.exit_code == 0, allowed.stderr
    assert Path("b.csv").read_text() == Path("a.csv").read_text()
    checked = cli("registry", "check", "--json")
    assert checked.exit_code == 0, checked.stdout
    notes = json.loads(checked.stdout)["notes"]
    assert [(n["kind"], n["version"]) for n in notes] == [("pickled_scalers_allowed", "1.0.0")]


# 8. Beyond loopback, a replica needs the reload key, as plain `serve` does.


def test_follow_mlflow_beyond_loopback_needs_the_reload_key(
    stub: HostileMlflow, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HHFORECAST_API_KEY", raising=False)
    project = replica(tmp_path / "replica", stub.url)
    refused = serve_follow(cli, project, "--host", "0.0.0.0")
    assert refused.exit_code == 2
    assert refused.stderr == (
        "Error: --host 0.0.0.0 accepts connections from other machines, so POST /api/reload "
        "must need a key: set $HHFORECAST_API_KEY to a secret (clients send it in the "
        "X-API-Key header), or serve on 127.0.0.1 behind a proxy\n"
    )
    assert stub.seen == []  # refused before asking MLflow anything
    monkeypatch.setenv("HHFORECAST_API_KEY", "s3cret")
    passed = serve_follow(cli, project, "--host", "0.0.0.0")
    assert passed.exit_code == 2 and "has no 'production' alias" in passed.stderr


# 9. Downloads are bounded in time and bytes; the follower moves on and says why.


def slow(numbers: set[str], every: float = 0.05, byte: bytes = b"x"):  # type: ignore[no-untyped-def]
    """A file hook: the network of these model versions arrives a byte at a time, forever."""

    def hook(handler: Handler, path: str) -> bool:
        number = path.removeprefix(f"{ARTIFACTS}/models/").split("/")[0]
        if number in numbers and path.endswith(KERAS):
            handler.drip(byte, every)
            return True
        return False

    return hook


@pytest.mark.slow
def test_an_endless_or_oversized_download_fails_in_time_and_the_next_alias_is_followed(
    trained_project: Project, stub: HostileMlflow, tmp_path: Path
) -> None:
    size = sum(p.stat().st_size for p in (trained_project.models / "1.1.0").rglob("*"))
    limits = {"download_timeout_seconds": 8, "max_download_bytes": 3 * size, "timeout_seconds": 1}
    project = replica(tmp_path / "replica", stub.url, limits)
    stub.publish("1", trained_project.models / "1.0.0")
    server = start_server(project, "--follow-mlflow")
    try:
        # A network that never ends: reported on /ready within the download deadline.
        stub.hooks["file"] = slow({"2", "3"})
        stub.publish("2", trained_project.models / "1.1.0")
        body = wait_for(server, lambda body: body["reload_failing"], timeout=30)
        assert body["ready"] is True and body["model_version"] == "1.0.0"
        assert body["last_failure"]["message"] == (
            f"MLflow at {stub.url} could not download the model: the download took longer "
            "than mlflow.download_timeout_seconds (8 s)"
        )
        assert answered_version(server) == "1.0.0"

        # The alias moves again while an endless download runs: the download is dropped at
        # the next poll (0.3 s), well before its deadline, and the new version is served.
        stub.publish("3", trained_project.models / "1.1.0")
        assert wait_until(
            lambda: any(s.path.endswith(KERAS) and "/3/" in s.path for s in stub.seen)
        )
        moved = time.monotonic()
        stub.publish("4", trained_project.models / "1.1.0")
        wait_for(server, lambda body: body["model_version"] == "1.1.0", timeout=30)
        assert time.monotonic() - moved < 6.0
        assert answered_version(server) == "1.1.0"

        # A network that is endless but fast: refused at the byte limit.
        stub.hooks["file"] = slow({"5"}, every=0, byte=b"x" * 65536)
        stub.publish("5", trained_project.models / "1.0.0")
        body = wait_for(
            server,
            lambda body: "max_download_bytes" in str(body["last_failure"]),
            timeout=30,
        )
        assert body["last_failure"]["message"] == (
            f"MLflow at {stub.url} could not download the model: the model version holds more "
            f"than mlflow.max_download_bytes ({3 * size} bytes)"
        )
        assert answered_version(server) == "1.1.0"
        assert leftovers(project) == []
        info = httpx.get(f"{server.url}/api/info").json()
        assert info["reload"]["failing"] is True
    finally:
        stop_server(server)


# 15. Credentials go only to the origin they were given for.


@pytest.fixture
def store() -> Iterator[HostileMlflow]:
    server = HostileMlflow().start()
    yield server
    server.stop()


@pytest.mark.parametrize("credentials", ["user-password", "token"])
@pytest.mark.parametrize("route", ["artifact-uri", "redirect"])
def test_credentials_never_reach_another_host(
    trained_project: Project,
    stub: HostileMlflow,
    store: HostileMlflow,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    credentials: str,
    route: str,
) -> None:
    for server in (stub, store):
        server.publish("1", trained_project.models / "1.0.0")
    if route == "artifact-uri":  # the tracking server names another host for the files
        stub.artifact_uri = lambda n: f"mlflow-artifacts://127.0.0.1:{store.port}/models/{n}"
    else:  # it redirects every file download to another host

        def redirect(handler: Handler, path: str) -> bool:
            handler.send_response(302)
            handler.send_header("Location", f"{store.url}{handler.path}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return True

        stub.hooks["file"] = redirect
    uri = stub.url
    if credentials == "token":
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0ken")
        expected = "Bearer t0ken"
    else:
        uri = uri.replace("http://", "http://alice:s3cret@")
        expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    project = replica(tmp_path / "replica", uri)
    source = AliasSource(project.settings)
    folder = source.fetch(source.resolve())
    assert (folder / KERAS).is_file()
    assert stub.seen and {s.authorization for s in stub.seen} == {expected}
    files = [s for s in store.seen if s.path.endswith(KERAS)]
    assert files and {s.authorization for s in store.seen} == {None}


# 16. Nesting, width and names of answers are bounded: one line, never a traceback.


def nested_alias(handler: Handler, path: str) -> bool:
    deep = b"[" * 100_000 + b"]" * 100_000
    handler.send_bytes(b'{"model_version": {"version": "1", "tags": ' + deep + b"}}")
    return True


def nested_error(handler: Handler, path: str) -> bool:
    handler.send_bytes(b'{"error_code": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 500)
    return True


def huge_alias(handler: Handler, path: str) -> bool:
    handler.send_bytes(b'{"pad": "' + b"x" * 5_000_000 + b'"}')
    return True


def deep_listing(handler: Handler, path: str) -> bool:
    handler.send_json({"files": [{"path": "d", "is_dir": True}]})
    return True


def wide_listing(handler: Handler, path: str) -> bool:
    handler.send_json({"files": [{"path": f"f{i}", "is_dir": False} for i in range(5000)]})
    return True


def named(name: str):  # type: ignore[no-untyped-def]
    def listing(handler: Handler, path: str) -> bool:
        handler.send_json({"files": [{"path": name, "is_dir": False}]})
        return True

    return listing


def twice(handler: Handler, path: str) -> bool:
    handler.send_json({"files": [{"path": "MLmodel", "is_dir": False}] * 2})
    return True


@pytest.mark.parametrize(
    ("kind", "hook", "reason"),
    [
        (
            "alias",
            nested_alias,
            "read the production alias: JSONDepthError: arrays and objects "
            "are nested more than 64 levels deep",
        ),
        ("alias", nested_error, "read the production alias: HTTP 500"),
        ("alias", huge_alias, "read the production alias: its answer is larger than 4000000 bytes"),
        ("listing", deep_listing, "list the model's files: its folders nest more than 8 deep"),
        (
            "listing",
            wide_listing,
            "list the model's files: it lists more than 1000 files and folders",
        ),
        ("listing", named("a\x00b"), "list the model's files: bad file name 'a\\x00b'"),
        ("listing", named("n" * 300), "list the model's files: bad file name 'nnnn"),
        ("listing", named(".."), "list the model's files: bad file name '..'"),
        ("listing", twice, "download the model: its listing names 'MLmodel' twice"),
    ],
    ids=[
        "nested-alias",
        "nested-error",
        "huge-alias",
        "deep",
        "wide",
        "nul",
        "long",
        "dotdot",
        "twice",
    ],
)
def test_a_hostile_answer_at_start_is_one_line_and_leaves_nothing(
    trained_project: Project,
    stub: HostileMlflow,
    tmp_path: Path,
    cli,
    kind: str,
    hook,  # type: ignore[no-untyped-def]
    reason: str,
) -> None:
    stub.publish("1", trained_project.models / "1.0.0")
    stub.hooks[kind] = hook
    project = replica(tmp_path / "replica", stub.url)
    result = serve_follow(cli, project)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"Error: MLflow at {stub.url} could not {reason}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert leftovers(project) == []
    cache = project.root / "mlflow-cache" / MODEL
    assert not cache.exists() or not any(cache.iterdir())


def test_a_partial_download_left_by_a_killed_replica_is_removed(
    trained_project: Project, stub: HostileMlflow, tmp_path: Path
) -> None:
    project = replica(tmp_path / "replica", stub.url)
    stale = project.root / "mlflow-cache" / ".download-0123456789ab"
    stale.mkdir(parents=True)
    (stale / "part").write_bytes(b"x" * 1000)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = project.root / "mlflow-cache" / ".download-fresh0000000"
    fresh.mkdir()  # another download, under way: left alone
    stub.publish("1", trained_project.models / "1.0.0")
    source = AliasSource(project.settings)
    source.fetch(source.resolve())
    assert leftovers(project) == [".download-fresh0000000"]


@pytest.mark.parametrize(
    "tag",
    ["[/]", "[bold red]1.0.0[/]", "1.0.0\x1b[2J", "../../etc", "9" * 65, ""],
)
def test_a_version_tag_an_alias_move_would_repeat_is_shown_only_when_it_is_a_version_name(
    tag: str,
) -> None:
    # `mlflow sync` and promote print the version an alias pointed at before, read from the
    # model version's tag on the tracking server: markup there made rich raise, control
    # characters reached the terminal.
    pytest.importorskip("mlflow", reason="MLflow is not installed: pip install '.[mlflow]'")
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

    from hhforecast.tracking.client import VERSION_TAG
    from hhforecast.tracking.mirror import UNNAMED, tagged_version

    crafted = ModelVersion("hh5", "3", 0, tags=[ModelVersionTag(VERSION_TAG, tag)])
    assert tagged_version(crafted) == UNNAMED
    named = ModelVersion("hh5", "3", 0, tags=[ModelVersionTag(VERSION_TAG, "1.0.0")])
    assert tagged_version(named) == "1.0.0"
    assert tagged_version(ModelVersion("hh5", "3", 0)) == UNNAMED
