"""Development launcher behind `make run` / `make migrate` / `make relay`.

DATABASE_URL from the environment or .env is used when set; otherwise an embedded PostgreSQL
(pgserver) is started in .data/postgres, whose data survives restarts. Then the migrations run and
uvicorn serves the app (or, with --relay, the events relay runs: python -m app.relay).
"""

import argparse
import os
import subprocess
import sys

from app.core.config import default_to_development, get_settings


def resolve_database_url() -> str:
    configured = get_settings().database_url
    if configured:
        return configured
    from scripts.embedded_postgres import DEFAULT_DATA_DIR, asyncpg_url, ensure_database

    url = asyncpg_url(DEFAULT_DATA_DIR, "payments")
    ensure_database(DEFAULT_DATA_DIR, "payments")
    print(f"DATABASE_URL not set: using embedded PostgreSQL in {DEFAULT_DATA_DIR}", file=sys.stderr)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--migrate-only", action="store_true")
    parser.add_argument("--relay", action="store_true", help="run the events relay instead of the server")
    args = parser.parse_args()

    default_to_development()
    env = {**os.environ, "DATABASE_URL": resolve_database_url()}
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], env=env, check=True)
    if args.migrate_only:
        return
    if args.relay:
        os.execvpe(sys.executable, [sys.executable, "-m", "app.relay"], env)  # noqa: S606 - our own module
    uvicorn = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:app",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--no-server-header",
    ]
    os.execvpe(sys.executable, uvicorn, env)  # noqa: S606 - replaces this process with the server


if __name__ == "__main__":
    main()
