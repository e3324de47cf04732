"""Debian's PgBouncer in transaction mode, in front of the test PostgreSQL (tests only)."""

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.live import free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def available() -> bool:
    return Path(PGBOUNCER).exists()


@contextmanager
def pgbouncer_in_front_of(database_url: str, server_connections: int = 20) -> Iterator[str]:
    """Start PgBouncer (pool_mode = transaction, at most `server_connections` to PostgreSQL) for the
    server of `database_url`; yield the same database's URL through PgBouncer."""
    url = make_url(database_url)
    socket_dir = url.query.get("host")
    backend = f"host={socket_dir}" if isinstance(socket_dir, str) else f"host={url.host} port={url.port or 5432}"
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    config = workdir / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                f"* = {backend} user={url.username or 'postgres'}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = any",
                "pool_mode = transaction",
                "max_client_conn = 500",
                f"default_pool_size = {server_connections}",
                "ignore_startup_parameters = extra_float_digits",
                f"logfile = {workdir / 'pgbouncer.log'}",
                f"pidfile = {workdir / 'pgbouncer.pid'}",
            ]
        )
        + "\n"
    )
    command = [PGBOUNCER]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root; run it as whoever owns the PostgreSQL socket folder.
        owner = pwd.getpwuid(Path(socket_dir).stat().st_uid).pw_name if isinstance(socket_dir, str) else "nobody"
        shutil.chown(workdir, owner)
        command += ["-u", owner]
    process = subprocess.Popen([*command, str(config)])  # noqa: S603 - our own config
    try:
        deadline = time.monotonic() + 10
        while not (workdir / "pgbouncer.pid").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                log = (workdir / "pgbouncer.log").read_text() if (workdir / "pgbouncer.log").exists() else ""
                raise RuntimeError(f"pgbouncer did not start: {log}")
            time.sleep(0.05)
        through = url.set(host="127.0.0.1", port=port, query={})
        yield through.render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
