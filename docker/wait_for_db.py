"""Wait until PostgreSQL answers `SELECT 1`, for container start-up (docker/entrypoint.sh).

    python docker/wait_for_db.py                   # DATABASE_URL from the environment, 60 s
    python docker/wait_for_db.py --timeout 5 --url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

Exit status: 0 when the database answered, 1 when it did not within the timeout, 2 when no URL was given.
Accepts the service's own URL form (postgresql+asyncpg://...) as well as a plain postgresql:// one.
Needs only asyncpg, so it runs before the app (and its settings) can be imported.
"""

import argparse
import asyncio
import os
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import asyncpg

EXIT_READY, EXIT_TIMEOUT, EXIT_USAGE = 0, 1, 2


def asyncpg_dsn(url: str) -> str:
    """The DSN asyncpg understands: SQLAlchemy's `postgresql+asyncpg://` scheme becomes `postgresql://`."""
    scheme, rest = url.split("://", 1) if "://" in url else (url, "")
    if scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {redact(url)}")
    return "postgresql://" + rest


def redact(url: str) -> str:
    """The URL without its password, for log lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def answers(dsn: str, connect_timeout: float) -> None:
    connection = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()


async def wait(dsn: str, timeout: float, interval: float) -> Exception | None:
    """None once the database answers; the last error when `timeout` seconds pass without that."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return last_error or TimeoutError(f"no answer within {timeout:g} s")
        try:
            await asyncio.wait_for(answers(dsn, connect_timeout=max(min(remaining, 5.0), 0.1)), timeout=remaining)
            return None
        except Exception as exc:  # refused, not resolvable yet, "the database system is starting up", ...
            last_error = exc
        await asyncio.sleep(min(interval, max(deadline - time.monotonic(), 0)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Wait until PostgreSQL answers SELECT 1.")
    parser.add_argument("--url", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL")
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("DB_WAIT_TIMEOUT", "60")),
        help="seconds to keep trying (default: $DB_WAIT_TIMEOUT or 60)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between attempts (default: 1)")
    args = parser.parse_args(argv)
    if not args.url:
        print("wait_for_db: DATABASE_URL is not set (or pass --url)", file=sys.stderr)
        return EXIT_USAGE
    try:
        dsn = asyncpg_dsn(args.url)
    except ValueError as exc:
        print(f"wait_for_db: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    error = asyncio.run(wait(dsn, args.timeout, args.interval))
    if error is not None:
        print(
            f"wait_for_db: {redact(args.url)} did not answer within {args.timeout:g} s: "
            f"{type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    print(f"wait_for_db: database ready after {time.monotonic() - started:.1f} s", file=sys.stderr)
    return EXIT_READY


if __name__ == "__main__":
    sys.exit(main())
