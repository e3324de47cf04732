"""Start (or reuse) an embedded PostgreSQL from the `pgserver` package and print its asyncpg URL.

Used by `make run` and the test suite when no DATABASE_URL / TEST_DATABASE_URL is given. The data
folder persists, so the data survives a restart; `python -m scripts.embedded_postgres --stop` stops it.
"""

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import quote

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / ".data" / "postgres"


def asyncpg_url(data_dir: Path, database: str = "postgres") -> str:
    """Start the server in `data_dir` if it is not running, and return a URL for `database`."""
    runtime_dir = data_dir.parent / "runtime"
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime_dir))
    import pgserver  # development-only dependency: imported only when an embedded server is wanted

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(  # type: ignore[attr-defined]
        data_dir, cleanup_mode=None
    )
    # pgserver listens on a Unix socket inside the data folder.
    return f"postgresql+asyncpg://postgres@/{database}?host={quote(str(server.pgdata))}"


def ensure_database(data_dir: Path, database: str) -> None:
    import pgserver

    server = pgserver.get_server(  # type: ignore[attr-defined]
        data_dir, cleanup_mode=None
    )
    if not database.replace("_", "").isalnum():
        raise SystemExit(f"database name must be letters, digits and underscores: {database!r}")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")  # noqa: S608
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')


def stop(data_dir: Path) -> None:
    import pgserver

    pgserver.get_server(  # type: ignore[attr-defined]
        data_dir, cleanup_mode="stop"
    ).cleanup()


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
