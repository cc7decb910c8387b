"""A private PostgreSQL server for tests, run from Debian's binaries (``apt-get install
postgresql``; ``make install-test`` installs them) without touching the system cluster.

The server lives in a temp dir of its own, listens on 127.0.0.1 only (no Unix socket) and
is stopped by its PID. PostgreSQL refuses to run as root, so as root every PostgreSQL
process runs as the ``postgres`` OS user the Debian package creates (``setpriv``, which
execs: the PID we hold is the postmaster's own), in a dir that user owns.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from loopml.launcher import free_port_block

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "pgadmin"
READY_TIMEOUT_S = 60


def pg_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb``, or ``None``."""
    found = sorted(PG_ROOT.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


@dataclass
class PostgresServer:
    """A running server; ``url(db)`` is a SQLAlchemy URL (psycopg 3) with the user's password."""

    port: int
    user: str
    password: str = field(repr=False)
    root: Path
    proc: subprocess.Popen = field(repr=False)
    log: Path = field(repr=False)

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str) -> psycopg.Connection:
        """A psycopg connection to ``database`` as the user (autocommit)."""
        return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                               dbname=database, autocommit=True, connect_timeout=10)

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT to the postmaster), SIGKILL after ``timeout`` s; removes the
        temp dir. Idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(databases: tuple[str, ...], *, user: str = "loopml") -> PostgresServer:
    """initdb a cluster in a fresh temp dir, start it on a free loopback port and create
    ``user`` (a login role with a generated password, not a superuser) owning each of
    ``databases``. Raises ``RuntimeError`` (after stopping it) when it does not come up."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        raise RuntimeError(f"no PostgreSQL under {PG_ROOT}: install Debian's postgresql (make install-test)")
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="loopml-pg-"))
    admin_password, password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    pwfile = root / "pwfile"
    pwfile.write_text(admin_password + "\n")
    if owner is not None:  # a temp dir is 0700 root's: hand it over
        os.chown(root, owner.pw_uid, owner.pw_gid)
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    as_owner = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] if owner else []
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(root)}
    data, log = root / "data", root / "postgres.log"
    subprocess.run([*as_owner, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                    "--auth=scram-sha-256", "--no-locale", "-E", "UTF8", "--no-sync"],
                   env=env, check=True, capture_output=True, timeout=120)
    port = free_port_block(1)
    with log.open("wb") as out:
        proc = subprocess.Popen([*as_owner, str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                                 "-p", str(port), "-k", "", "-c", "fsync=off", "-c", "synchronous_commit=off",
                                 "-c", "full_page_writes=off"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = PostgresServer(port=port, user=SUPERUSER, password=admin_password, root=root, proc=proc, log=log)
    try:
        _wait_ready(server)
        with server.connect("postgres") as conn:
            conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
            for database in databases:
                conn.execute(f"CREATE DATABASE {database} OWNER {user}")
    except BaseException:
        server.stop()
        raise
    server.user, server.password = user, password
    return server


def _wait_ready(server: PostgresServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {server.proc.returncode}: {server.log.read_text()[-2000:]}")
        try:
            server.connect("postgres").close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready after {READY_TIMEOUT_S} s: {server.log.read_text()[-2000:]}") from None
            time.sleep(0.2)
