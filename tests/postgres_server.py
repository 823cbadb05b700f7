"""A real PostgreSQL server for the tests: Debian's binaries, a cluster in a temporary folder,
a free loopback port. Started as the `postgres` user when the tests run as root."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

BIN_GLOB = "/usr/lib/postgresql/*/bin"


def postgres_bin() -> Path | None:
    """The newest installed server's bin folder, or None when PostgreSQL is not installed."""
    found = sorted(
        (Path(p) for p in glob.glob(BIN_GLOB) if (Path(p) / "pg_ctl").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """One cluster: `url(database)` to reach it, `stop()` and `start()` for outages."""

    bin: Path
    data: Path
    port: int

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb and the server refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(
            command, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=120
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off"
        # -l: the server writes to a file, not to pg_ctl's pipes (which would then never close).
        log = str(self.data.parent / "server.log")
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "60", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_postgres(folder: Path) -> PostgresServer:
    """initdb a cluster in `folder` (trusting loopback connections) and start it."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError(f"no PostgreSQL server under {BIN_GLOB}")
    data = folder / "data"
    data.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(data, "postgres")
    server = PostgresServer(bin_dir, data, _free_port())
    server._run(
        "initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--locale=C.UTF-8",
        "--encoding=UTF8",
    )  # fmt: skip
    server.start()
    return server
