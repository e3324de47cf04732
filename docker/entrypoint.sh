#!/bin/sh
# Container start-up: wait for PostgreSQL, apply the migrations, then run the server as PID 1.
# Also runs outside Docker from a checkout: PATH=$PWD/.venv/bin:$PATH DATABASE_URL=... docker/entrypoint.sh
#
#   DATABASE_URL            required, postgresql+asyncpg://user:password@host:5432/db
#   MIGRATION_DATABASE_URL  optional, a direct PostgreSQL URL for the migrations, for when
#                           DATABASE_URL points at PgBouncer in transaction mode (alembic cannot
#                           run through it); default DATABASE_URL
#   DB_WAIT_TIMEOUT         seconds to wait for the database (default 60)
#   WEB_CONCURRENCY         uvicorn worker processes (default 1)
#   PORT                    port to listen on (default 8002)
#
# Arguments, when given, replace the server command (after the wait and the migrations),
# e.g. `docker compose run --rm api python -m alembic current`.
set -eu

cd "$(dirname "$0")/.."   # the project root: /app in the image

if [ -z "${DATABASE_URL:-}" ]; then
    echo "entrypoint: DATABASE_URL is not set" >&2
    exit 2
fi

python docker/wait_for_db.py --timeout "${DB_WAIT_TIMEOUT:-60}"
if [ -n "${MIGRATION_DATABASE_URL:-}" ]; then
    python docker/wait_for_db.py --timeout "${DB_WAIT_TIMEOUT:-60}" --url "$MIGRATION_DATABASE_URL"
    DATABASE_URL="$MIGRATION_DATABASE_URL" python -m alembic upgrade head
else
    python -m alembic upgrade head
fi

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
exec python -m uvicorn app.main:app --host 0.0.0.0 --port "${PORT:-8002}" --workers "${WEB_CONCURRENCY:-1}"
