"""A real, throwaway PostgreSQL cluster for the batch tests: `initdb` + `pg_ctl` in a temp
dir, listening on a free loopback port (and a socket in that dir).

One cluster per test session (`shared_cluster()`), stopped at exit; each test makes its
own database. Missing binaries are an error, never a skip: CI installs PostgreSQL, and a
silently skipped suite would hide a broken PostgreSQL store. PostgreSQL refuses to run as
root, so as root the cluster runs as the `postgres` user (or `nobody`).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

INSTALL_HINT = "install it with: apt-get update && apt-get install -y postgresql"


def pg_bindir() -> Path:
    """$PG_BIN, else the newest /usr/lib/postgresql/*/bin, else initdb on PATH."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit()
                         else 0, reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() \
                and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise RuntimeError(f"PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root with no 'postgres' or 'nobody' user for PostgreSQL")


class PgCluster:
    def __init__(self) -> None:
        self.bindir = pg_bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ora-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.user = _run_as()
        self.started = False

    def _pg(self, tool: str, *args: str, timeout: float = 60) -> None:
        result = subprocess.run([str(self.bindir / tool), *args], user=self.user,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr}\n{log}")

    def start(self) -> PgCluster:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                 "--locale=C", "--no-sync")
        # Durability of PostgreSQL itself is not under test (our server is what gets killed).
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                 "-t", "60", "start")
        self.started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self._psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def _psql(self, sql: str) -> None:
        subprocess.run([str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
                       check=True, capture_output=True, timeout=30)

    def stop(self) -> None:
        if self.started:
            self.started = False
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


_shared: list[PgCluster] = []


def shared_cluster() -> PgCluster:
    """The session's cluster, started on first use and stopped when the tests exit."""
    if not _shared:
        cluster = PgCluster()
        atexit.register(cluster.stop)
        _shared.append(cluster.start())
    return _shared[0]
