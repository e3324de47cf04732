"""docker/entrypoint.sh and docker/wait_for_db.py, run outside Docker as the image runs them: wait
for the database, migrate (or not), serve with WEB_CONCURRENCY workers, stop on SIGTERM. Each test
gets a fresh, unmigrated database on the suite's server."""

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from tests import databases
from tests.conftest import TEST_SECRET
from tests.live import PROJECT_ROOT, free_port

pytestmark = pytest.mark.slow

ENTRYPOINT = PROJECT_ROOT / "docker" / "entrypoint.sh"
WAIT_FOR_DB = PROJECT_ROOT / "docker" / "wait_for_db.py"
MIGRATION_JOB = PROJECT_ROOT / "deploy" / "migration-job.yaml"
CONFIGMAP = PROJECT_ROOT / "deploy" / "configmap.yaml"
# The venv's bin (not resolved: .venv/bin/python is a symlink), where the image has /opt/venv/bin.
VENV_BIN = Path(sys.executable).parent
TABLES = {"payments", "payment_status_history", "idempotency_keys", "webhook_events"}
# Variables from the caller's environment that must not leak into the runs below.
OWN_VARIABLES = {name.upper() for name in Settings.model_fields} | {
    "RUN_MIGRATIONS",
    "MIGRATION_DATABASE_URL",
    "DB_WAIT_TIMEOUT",
    "WEB_CONCURRENCY",
    "HOST",
    "PORT",
}


def entrypoint_env(**variables: str) -> dict[str, str]:
    """The environment of a production container, with the venv first on PATH."""
    env = {name: value for name, value in os.environ.items() if name.upper() not in OWN_VARIABLES}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(ENVIRONMENT="production", SECRET_KEY=TEST_SECRET, LOG_LEVEL="WARNING", DB_WAIT_TIMEOUT="10")
    env.update(variables)
    return env


@pytest.fixture
def fresh_database(server_url: str) -> Iterator[str]:
    name = f"payment_service_entrypoint_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = databases.create_database(server_url, name)
    yield url
    databases.drop_database(server_url, name)


def closed_port_url(password: str = "") -> str:
    secret = f":{password}" if password else ""
    return f"postgresql+asyncpg://postgres{secret}@127.0.0.1:{free_port()}/postgres"


def head_revision() -> str:
    head = ScriptDirectory.from_config(databases.alembic_config("unused")).get_current_head()
    assert head is not None
    return head


async def _database_state(url: str) -> tuple[str | None, set[str]]:
    """(alembic revision or None, public tables)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            tables = set(
                (
                    await connection.execute(
                        text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
                    )
                ).scalars()
            )
            revision = None
            if "alembic_version" in tables:
                revision = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
            return revision, tables
    finally:
        await engine.dispose()


def database_state(url: str) -> tuple[str | None, set[str]]:
    return asyncio.run(_database_state(url))


def run_entrypoint(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own script
        [str(ENTRYPOINT), *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def children(pid: int) -> dict[int, str]:
    """The live child processes of `pid` and their command lines, from /proc."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = command
    return found


def uvicorn_workers(pid: int) -> dict[int, str]:
    # uvicorn --workers N spawns N multiprocessing children (besides multiprocessing's resource tracker).
    return {child: command for child, command in children(pid).items() if "spawn_main" in command}


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the entrypoint exited with {process.returncode}:\n{log.read_text()[-5000:]}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer 200 within {timeout} s:\n{log.read_text()[-5000:]}")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts worker processes through /proc (Linux)")
def test_the_entrypoint_migrates_serves_with_n_workers_and_stops_on_sigterm(fresh_database: str) -> None:
    assert database_state(fresh_database) == (None, set())
    port = free_port()
    workers = 2
    env = entrypoint_env(DATABASE_URL=fresh_database, HOST="127.0.0.1", PORT=str(port), WEB_CONCURRENCY=str(workers))
    with tempfile.NamedTemporaryFile(prefix="entrypoint-", suffix=".log", delete=False) as log_file:
        log = Path(log_file.name)
        process = subprocess.Popen(  # noqa: S603 - our own script
            [str(ENTRYPOINT)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that cleanup reaches the workers
        )
    try:
        base = f"http://127.0.0.1:{port}"
        health = wait_for(f"{base}/health", process, log)
        assert health.json()["status"] == "healthy"
        assert "server" not in health.headers  # uvicorn's banner is not sent (--no-server-header)
        assert wait_for(f"{base}/health/ready", process, log).json() == {"status": "ready"}

        revision, tables = database_state(fresh_database)
        assert revision == head_revision()
        assert tables >= TABLES | {"alembic_version"}

        # The shell exec'd the server: the process we started is uvicorn's supervisor.
        supervisor = Path(f"/proc/{process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert "uvicorn app.main:app" in supervisor
        assert f"--workers {workers}" in supervisor
        deadline = time.monotonic() + 30
        while len(uvicorn_workers(process.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        worker_pids = set(uvicorn_workers(process.pid))
        assert len(worker_pids) == workers, children(process.pid)

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 10 s after SIGTERM:\n{log.read_text()[-5000:]}")
        assert returncode == 0, log.read_text()[-5000:]
        assert time.monotonic() - started < 10
        # The supervisor stopped and reaped its workers before exiting.
        assert not [pid for pid in worker_pids if Path(f"/proc/{pid}").exists()]
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/health", timeout=1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.unlink(missing_ok=True)


def test_run_migrations_false_leaves_the_database_alone(fresh_database: str) -> None:
    """The replicas' setting (deploy/deployment.yaml): wait for the database, do not migrate."""
    result = run_entrypoint(
        entrypoint_env(DATABASE_URL=fresh_database, RUN_MIGRATIONS="false"), "python", "-m", "alembic", "current"
    )
    assert result.returncode == 0, result.stderr
    assert "not migrating" in result.stderr
    assert "Running upgrade" not in result.stderr
    assert database_state(fresh_database) == (None, set())


def test_the_migration_jobs_command_migrates(fresh_database: str) -> None:
    """deploy/migration-job.yaml's arguments and environment, run through the image's entrypoint."""
    job = yaml.safe_load(MIGRATION_JOB.read_text())
    [container] = job["spec"]["template"]["spec"]["containers"]
    config: dict[str, Any] = yaml.safe_load(CONFIGMAP.read_text())["data"]
    values = {entry["name"]: entry["value"] for entry in container["env"] if "value" in entry}
    # envFrom first, then env (which wins), as Kubernetes does; DATABASE_URL stands for the secret.
    env = entrypoint_env(**{**config, **values, "DATABASE_URL": fresh_database})
    result = run_entrypoint(env, *container["args"], timeout=120)
    assert result.returncode == 0, result.stderr
    revision, tables = database_state(fresh_database)
    assert revision == head_revision()
    assert tables >= TABLES
    # A second release with no new migration: a no-op.
    again = run_entrypoint(env, *container["args"])
    assert again.returncode == 0, again.stderr
    assert "Running upgrade" not in again.stderr


def test_the_entrypoint_refuses_to_start_without_a_database_url() -> None:
    result = run_entrypoint(entrypoint_env())
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr


def test_the_entrypoint_refuses_an_unknown_run_migrations_value() -> None:
    result = run_entrypoint(entrypoint_env(DATABASE_URL=closed_port_url(), RUN_MIGRATIONS="sometimes"))
    assert result.returncode == 2
    assert "RUN_MIGRATIONS" in result.stderr


def test_the_entrypoint_gives_up_when_the_database_never_answers() -> None:
    started = time.monotonic()
    result = run_entrypoint(entrypoint_env(DATABASE_URL=closed_port_url(), DB_WAIT_TIMEOUT="1"), timeout=30)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 20
    assert "did not answer within 1 s" in result.stderr
    assert "alembic" not in result.stderr.lower()


def wait_for_db(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(WAIT_FOR_DB), *args],
        cwd=PROJECT_ROOT,
        env=env if env is not None else entrypoint_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_wait_for_db_exits_0_when_the_database_answers(server_url: str) -> None:
    result = wait_for_db("--url", server_url, "--timeout", "10")
    assert result.returncode == 0, result.stderr
    assert "database ready" in result.stderr


def test_wait_for_db_reads_database_url(server_url: str) -> None:
    assert wait_for_db("--timeout", "10", env=entrypoint_env(DATABASE_URL=server_url)).returncode == 0


def test_wait_for_db_exits_1_quickly_for_a_closed_port() -> None:
    started = time.monotonic()
    result = wait_for_db("--url", closed_port_url(password="hunter2"), "--timeout", "2", "--interval", "0.2")
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert 2 <= elapsed < 10
    assert "did not answer within 2 s" in result.stderr
    assert "hunter2" not in result.stderr
    assert ":***@" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "DATABASE_URL is not set"), (["--url", "mysql://root@127.0.0.1/db"], "not a PostgreSQL URL")],
    ids=["no-url", "not-postgres"],
)
def test_wait_for_db_exits_2_without_a_usable_url(args: list[str], message: str) -> None:
    result = wait_for_db(*args, "--timeout", "1")
    assert result.returncode == 2
    assert message in result.stderr
