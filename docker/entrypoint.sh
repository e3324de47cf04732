#!/bin/sh
# Container start-up: wait for PostgreSQL, apply the migrations, then run the server as PID 1.
# Also runs outside Docker from a checkout (tests/test_entrypoint.py does):
#   PATH=$PWD/.venv/bin:$PATH DATABASE_URL=... PORT=8010 docker/entrypoint.sh
#
#   DATABASE_URL            required, postgresql+asyncpg://user:password@host:5432/db
#   RUN_MIGRATIONS          true (default): `alembic upgrade head` before serving; false: skip it,
#                           for replicas whose migrations run once per release elsewhere (the
#                           Kubernetes Job in deploy/migration-job.yaml)
#   MIGRATION_DATABASE_URL  optional, a direct PostgreSQL URL for the migrations, for when
#                           DATABASE_URL points at PgBouncer; default DATABASE_URL
#   DB_WAIT_TIMEOUT         seconds to wait for the database (default 60)
#   WEB_CONCURRENCY         uvicorn worker processes (default 1)
#   HOST                    address to listen on (default 0.0.0.0)
#   PORT                    port to listen on (default 8002)
#
# Arguments, when given, replace the server command (after the wait and the migrations, if any),
# e.g. `docker compose run --rm api python -m alembic current`.
set -eu

cd "$(dirname "$0")/.."   # the project root: /app in the image

if [ -z "${DATABASE_URL:-}" ]; then
    echo "entrypoint: DATABASE_URL is not set" >&2
    exit 2
fi

case "$(printf '%s' "${RUN_MIGRATIONS:-true}" | tr '[:upper:]' '[:lower:]')" in
    true | 1 | yes | on) run_migrations=true ;;
    false | 0 | no | off) run_migrations=false ;;
    *)
        echo "entrypoint: RUN_MIGRATIONS must be true or false, not '${RUN_MIGRATIONS}'" >&2
        exit 2
        ;;
esac

python docker/wait_for_db.py --timeout "${DB_WAIT_TIMEOUT:-60}"
if [ "$run_migrations" = true ]; then
    if [ -n "${MIGRATION_DATABASE_URL:-}" ]; then
        python docker/wait_for_db.py --timeout "${DB_WAIT_TIMEOUT:-60}" --url "$MIGRATION_DATABASE_URL"
        DATABASE_URL="$MIGRATION_DATABASE_URL" python -m alembic upgrade head
    else
        python -m alembic upgrade head
    fi
else
    echo "entrypoint: RUN_MIGRATIONS=false, not migrating" >&2
fi

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
exec python -m uvicorn app.main:app --host "${HOST:-0.0.0.0}" --port "${PORT:-8002}" --workers "${WEB_CONCURRENCY:-1}" --no-server-header
