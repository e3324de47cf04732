"""Start (or reuse) an embedded PostgreSQL from the `pgserver` package and print its asyncpg URL.

Used by `make run` and the test suite when no DATABASE_URL / TEST_DATABASE_URL is given. The data
folder persists, so the data survives a restart; `python -m scripts.embedded_postgres --stop` stops it.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / ".data" / "postgres"


def _pgserver() -> Any:
    """The pgserver module (a development-only dependency, imported only when a server is wanted)."""
    # pgserver keeps its lock file (and, for deep data folders, the socket) in the runtime folder:
    # keep it short, since a Unix socket path is limited to about 100 bytes.
    runtime_dir = Path(tempfile.gettempdir()) / f"payment-service-{os.getuid()}"
    runtime_dir.mkdir(exist_ok=True)
    runtime_dir.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime_dir))
    import pgserver

    return pgserver


def server(data_dir: Path) -> Any:
    """The PostgreSQL server in `data_dir`, started if it is not running (it keeps running)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    instance = _pgserver().get_server(data_dir, cleanup_mode=None)
    # get_server reuses this process's handle without checking it; start the server again if it
    # was stopped since (as the outage test does).
    instance.ensure_postgres_running()
    return instance


def asyncpg_url(data_dir: Path, database: str = "postgres") -> str:
    """Start the server in `data_dir` if it is not running, and return a URL for `database`."""
    # pgserver listens on a Unix socket only: in the data folder, or in a shorter temporary
    # folder when the data folder's path is too long for a socket name. Its URI says which.
    socket_dir = parse_qs(urlsplit(server(data_dir).get_uri()).query)["host"][0]
    return f"postgresql+asyncpg://postgres@/{database}?host={quote(socket_dir)}"


def ensure_database(data_dir: Path, database: str) -> None:
    if not database.replace("_", "").isalnum():
        raise SystemExit(f"database name must be letters, digits and underscores: {database!r}")
    running = server(data_dir)
    exists = running.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")  # noqa: S608
    if "(1 row)" not in exists:
        running.psql(f'CREATE DATABASE "{database}";')


def stop(data_dir: Path) -> None:
    pgserver = _pgserver()
    pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=server(data_dir).system_user)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--database", default="payments")
    parser.add_argument("--stop", action="store_true")
    args = parser.parse_args()
    if args.stop:
        stop(args.data_dir)
        return
    url = asyncpg_url(args.data_dir, args.database)
    ensure_database(args.data_dir, args.database)
    sys.stdout.write(url + "\n")


if __name__ == "__main__":
    main()
