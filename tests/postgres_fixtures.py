"""A throwaway PostgreSQL cluster for tests: Debian's server binaries, initdb into a temp dir,
pg_ctl on a free 127.0.0.1 port. Skips, with the reason, where no PostgreSQL is installed.

    from postgres_fixtures import postgres  # noqa: F401 - the session-scoped fixture

    def test_x(postgres):
        postgres.url            # postgresql://litevlm@127.0.0.1:PORT/litevlm
        postgres.restart()      # pg_ctl restart: every open connection is cut
        postgres.stop(); postgres.start()

PostgreSQL refuses to run as root, so as root (CI, this machine) the cluster belongs to the
``postgres`` user that Debian's package creates and every pg_ctl runs through ``runuser``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_ROOT = Path("/usr/lib/postgresql")
USER = "litevlm"


def pg_bin() -> Path | None:
    """The newest installed server's bin/ (Debian: /usr/lib/postgresql/<major>/bin), or one on
    PATH, or None."""
    if env := os.environ.get("LITEVLM_PG_BIN"):
        return Path(env)
    versions = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1]
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Postgres:
    bin: Path
    data: Path
    port: int
    run_as: str | None  # "postgres" when the tests run as root

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{USER}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)

    def _options(self) -> str:
        # Loopback only, socket in the cluster's own folder, no fsync (a throwaway cluster).
        return f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off"

    def start(self) -> None:
        log = str(self.data / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """A fast shutdown and a start: every client connection is cut, the data stays.
        (Not ``pg_ctl restart``: it ignores ``-l``, so the new server would hold our pipe.)"""
        self.stop()
        self.start()

    def terminate_connections(self) -> int:
        """Cut every client connection but this one, as a network drop or a failover would."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchall()
        return len(rows)

    def create_database(self, name: str) -> str:
        """A fresh database on the cluster; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"


def start_cluster() -> tuple[Postgres, Path]:
    """initdb + start; (cluster, its temp root). Raises pytest.skip without PostgreSQL."""
    bin_dir = pg_bin()
    if bin_dir is None:
        pytest.skip(
            "no PostgreSQL server binaries (initdb/pg_ctl): apt-get install postgresql "
            "(.ci/run does), or set LITEVLM_PG_BIN"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'litevlm[postgres]'")
    run_as = None
    root = Path(tempfile.mkdtemp(prefix="litevlm-pg-"))
    if os.geteuid() == 0:
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no 'postgres' user to own the cluster")
        run_as = "postgres"
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data = root / "data"
    pg = Postgres(bin=bin_dir, data=data, port=_free_port(), run_as=run_as)
    pg._run("initdb", "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync")
    pg.start()
    pg._run("createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", USER, USER)
    return pg, root


@pytest.fixture(scope="session")
def postgres():
    pg, root = start_cluster()
    try:
        yield pg
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)
