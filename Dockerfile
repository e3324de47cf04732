# payment-service image: `docker build -t payment-service .`, or `make docker-up` for the compose stack.
# Runtime needs DATABASE_URL and, because ENVIRONMENT defaults to production here, a SECRET_KEY of
# at least 32 characters that is not one of the repository's example values.

# --- builder: a virtualenv with the runtime requirements only (no pgserver, linters or test tools) ---
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# pip and setuptools are not needed at run time: dropping them keeps the image smaller.
RUN /opt/venv/bin/pip install --requirement /tmp/requirements.txt \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet pip setuptools

# --- runtime ---
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    WEB_CONCURRENCY=1

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# Owned by root and read-only for the service user: the process cannot change its own code.
COPY alembic.ini ./
COPY alembic/ ./alembic/
COPY app/ ./app/
COPY scripts/ ./scripts/
COPY docker/ ./docker/
# Bytecode compiled now, as root: the service user cannot write here (nor anywhere, under Kubernetes'
# readOnlyRootFilesystem, see deploy/deployment.yaml), so it would otherwise recompile at every start.
RUN python -m compileall -q /app

USER app
EXPOSE 8002

# python:3.11-slim has no curl: ask /health with the standard library (non-2xx or no answer -> exit 1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8002'), timeout=3)"]

# uvicorn (PID 1, exec'd by the entrypoint) finishes in-flight requests on SIGTERM, then exits.
STOPSIGNAL SIGTERM

# Waits for the database, runs `alembic upgrade head` (unless RUN_MIGRATIONS=false, as for the
# Kubernetes replicas, which a Job migrates once per release), then execs uvicorn on 0.0.0.0:8002
# with WEB_CONCURRENCY workers.
ENTRYPOINT ["sh", "/app/docker/entrypoint.sh"]
