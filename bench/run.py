"""The payment service's benchmark: `make bench` (full) and `make bench-smoke` (a few seconds, for CI).

One command: makes a fresh database `payment_bench` (BENCH_DATABASE_URL's server, else an embedded
PostgreSQL in .data/bench-postgres), migrates it with alembic, loads payments in bulk, starts the
service in its production configuration and the bare baseline app (bench/baseline_app.py) on two
free ports of 127.0.0.1, drives each scenario against both with wrk, prints a table and writes
bench/results/<UTC timestamp>.json and bench/results/latest.json (smoke: smoke-latest.json).

See bench/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg  # type: ignore[import-untyped]
from pydantic import SecretStr
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
LUA_DIR = BENCH_DIR / "lua"
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = REPO / ".data" / "bench-work"  # logs and generated Lua data (gitignored)
EMBEDDED_DATA_DIR = REPO / ".data" / "bench-postgres"
DATABASE_NAME = "payment_bench"
HOST = "127.0.0.1"
BENCH_USER = 1  # the caller of every request: the user with the deep history

SCENARIOS = (
    "get_by_id",
    "list_page1_filtered",
    "deep_page_offset",
    "deep_page_cursor",
    "create",
    "patch_status",
    "create_refund",
    "get_by_id_2_workers",
)
# Scenarios measured on a second pair of servers with this many uvicorn workers each (the scaling row).
MULTI_WORKER_SCENARIOS = {"get_by_id_2_workers": 2}
LIST_STATUS_FILTER = "succeeded"
PAGE_SIZE = 20
FULL_DEEP_PAGE = 400
PATCH_POOL_MAX = 2_000
# create_refund: refunds of REFUND_AMOUNT on a pool of user 1's succeeded USD payments of at least
# REFUND_POOL_MIN_TOTAL (so each takes 10,000 refunds or more before its refundable runs out); the
# pool's refunds are deleted and its sums set back to 0 before every run (reset_refund_pool).
REFUND_POOL_MAX = 2_000
REFUND_POOL_MIN_TOTAL = 100
REFUND_AMOUNT = "0.01"
REFUND_REASON = "requested_by_customer"
WRK_TIMEOUT = "10s"
OTHER_CPU_WARNING = 10.0  # percent of all CPUs
SERVER_START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class DataShape:
    payments: int
    users: int
    user1_payments: int


@dataclass(frozen=True)
class Config:
    smoke: bool
    duration: int
    warmup: int
    connections: int
    threads: int
    scenarios: tuple[str, ...]
    workers: int
    pool_size: int
    data: DataShape
    strict: bool = False
    rounds: int = 1


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data, 1 s warm-up, 2 s per scenario, 16 conns")
    parser.add_argument("--duration", type=int, help="measured seconds per scenario and server (default 10; smoke 2)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds before each measurement (default 3; smoke 1)")
    parser.add_argument("--connections", type=int, help="wrk connections (default 64; smoke 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of: {','.join(SCENARIOS)}"
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers for the service (and the baseline)")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=10,
        help="service DB_POOL_SIZE and the baseline's asyncpg pool min=max (default 10)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="measure service and baseline alternately this many times per scenario and keep each one's best "
        "run, so a slow spell on a shared machine does not decide a ratio (default 2; smoke 1)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when the service answered any non-2xx or had socket errors"
    )
    args = parser.parse_args(argv)
    scenarios = tuple(name.strip() for name in args.scenarios.split(",") if name.strip())
    unknown = [name for name in scenarios if name not in SCENARIOS]
    if unknown or not scenarios:
        parser.error(f"unknown scenario(s) {unknown}; choose from {','.join(SCENARIOS)}")
    smoke = bool(args.smoke)
    duration = args.duration if args.duration is not None else (2 if smoke else 10)
    warmup = args.warmup if args.warmup is not None else (1 if smoke else 3)
    connections = args.connections if args.connections is not None else (16 if smoke else 64)
    rounds = args.rounds if args.rounds is not None else (1 if smoke else 2)
    for name, value, minimum in (
        ("--duration", duration, 1),
        ("--warmup", warmup, 0),
        ("--threads", args.threads, 1),
        ("--workers", args.workers, 1),
        ("--pool-size", args.pool_size, 1),
        ("--rounds", rounds, 1),
    ):
        if value < minimum:
            parser.error(f"{name} must be >= {minimum}")
    if connections < args.threads:
        parser.error("--connections must be >= --threads")
    data = DataShape(1_000, 10, 200) if smoke else DataShape(100_000, 1_000, 10_000)
    return Config(
        smoke=smoke,
        duration=duration,
        warmup=warmup,
        connections=connections,
        threads=args.threads,
        scenarios=scenarios,
        workers=args.workers,
        rounds=rounds,
        pool_size=args.pool_size,
        data=data,
        strict=bool(args.strict),
    )


def log(message: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# wrk


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is not installed: apt-get install -y wrk", file=sys.stderr, flush=True)
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or apt is None:
        raise SystemExit("wrk is required (Debian/Ubuntu: apt-get install -y wrk)")
    log("running as root with apt-get: installing wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, timeout=600, check=False).returncode != 0:
        subprocess.run([apt, "update", "-q"], env=env, timeout=600, check=False)
        subprocess.run(install, env=env, timeout=600, check=False)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("could not install wrk; install it with: apt-get install -y wrk")
    return found


def wrk_version(wrk: str) -> str:
    result = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
    first = (result.stdout or result.stderr).strip().splitlines()
    return first[0] if first else "unknown"


# --------------------------------------------------------------------------------------------
# Database


def server_url() -> tuple[str, str]:
    """The URL of a database on the server to use, and a description safe to print."""
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        if not url.startswith("postgresql+asyncpg://"):
            raise SystemExit("BENCH_DATABASE_URL must start with postgresql+asyncpg://")
        return url, "BENCH_DATABASE_URL " + make_url(url).render_as_string(hide_password=True)
    from scripts.embedded_postgres import asyncpg_url

    log(f"BENCH_DATABASE_URL not set: embedded PostgreSQL in {EMBEDDED_DATA_DIR}")
    return asyncpg_url(EMBEDDED_DATA_DIR), f"embedded PostgreSQL ({EMBEDDED_DATA_DIR.relative_to(REPO)})"


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def recreate_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(admin_url), timeout=30)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def migrate(database_url: str) -> None:
    """alembic upgrade head, programmatically (as tests/databases.py does)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from app.core.config import default_to_development

    default_to_development()  # Alembic's env.py reads the settings; the servers get their own env
    config = AlembicConfig(str(REPO / "alembic.ini"))
    config.set_main_option("script_location", str(REPO / "alembic"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


# Deterministic (setseed) bulk load in one INSERT ... SELECT generate_series. User 1 owns the first
# `user1` rows; the rest go round-robin to users 2..users. Statuses, providers and currencies are
# mixed (mostly succeeded, stripe and USD), created_at is spread over the past year. A refunded payment
# is refunded in full (amount_refunded = amount_total, as the payments' CHECK constraint requires), with
# one succeeded refund row (LOAD_REFUNDS), as migration 0004 backfills old refunded payments.
LOAD_PAYMENTS = """
INSERT INTO payments (
    payment_id, checkout_session_id, payment_method_id, payment_method_types, payment_status, currency,
    amount_total, amount_refunded, customer_id, customer_email, booking_id, property_id, user_id, provider,
    description, metadata, version, created_at, updated_at
)
SELECT
    'pi_bench_' || lpad(g::text, 7, '0'),
    CASE WHEN provider = 'stripe' THEN 'cs_bench_' || lpad(g::text, 7, '0') END,
    'pm_bench_' || (g % 5000),
    CASE WHEN r_methods < 0.8 THEN ARRAY['card']::varchar[] ELSE ARRAY['card', 'sepa_debit']::varchar[] END,
    status::payment_status,
    currency,
    amount,
    CASE WHEN status = 'refunded' THEN amount ELSE 0 END,
    'cus_' || user_id,
    'user' || user_id || '@example.com',
    'bk_' || (g / 2),
    'prop_' || (g % 500),
    user_id,
    provider::payment_provider,
    'Booking ' || (g / 2) || ' at property ' || (g % 500),
    jsonb_build_object('order_ref', 'A-' || g, 'channel', CASE WHEN r_methods < 0.5 THEN 'web' ELSE 'app' END),
    1,
    created_at,
    least(now(), created_at + r_updated * interval '2 days')
FROM (
    SELECT
        *,
        CASE WHEN currency = 'JPY' THEN round(1000 + r_amount * 90000)
             ELSE round((10 + r_amount * 1990)::numeric, 2) END AS amount
    FROM (
        SELECT
            g,
            user_id,
            r_methods,
            r_amount,
            r_updated,
            now() - r_created * interval '365 days' AS created_at,
            CASE WHEN r_status < 0.55 THEN 'succeeded'
                 WHEN r_status < 0.65 THEN 'pending'
                 WHEN r_status < 0.70 THEN 'processing'
                 WHEN r_status < 0.82 THEN 'failed'
                 WHEN r_status < 0.90 THEN 'canceled'
                 ELSE 'refunded' END AS status,
            CASE WHEN r_provider < 0.60 THEN 'stripe'
                 WHEN r_provider < 0.80 THEN 'paypal'
                 WHEN r_provider < 0.90 THEN 'square'
                 WHEN r_provider < 0.95 THEN 'razorpay'
                 ELSE 'other' END AS provider,
            CASE WHEN r_currency < 0.80 THEN 'USD'
                 WHEN r_currency < 0.90 THEN 'EUR'
                 WHEN r_currency < 0.95 THEN 'GBP'
                 WHEN r_currency < 0.98 THEN 'CAD'
                 ELSE 'JPY' END AS currency
        FROM (
            SELECT
                g,
                CASE WHEN g <= $2 THEN 1 ELSE 2 + (g - $2 - 1) % ($3 - 1) END AS user_id,
                random() AS r_status, random() AS r_provider, random() AS r_currency, random() AS r_amount,
                random() AS r_methods, random() AS r_created, random() AS r_updated
            FROM generate_series(1, $1::int) AS g
        ) AS draws
    ) AS drawn
) AS rows
ORDER BY created_at
"""

LOAD_HISTORY = """
INSERT INTO payment_status_history (payment_id, from_status, to_status, actor, created_at)
SELECT id, NULL, payment_status, 'user:' || user_id, created_at FROM payments ORDER BY id
"""

LOAD_REFUNDS = """
INSERT INTO refunds (payment_id, provider, amount, currency, status, actor, created_at, updated_at)
SELECT id, provider, amount_total, currency, 'succeeded', 'system:migration', updated_at, updated_at
FROM payments WHERE payment_status = 'refunded' ORDER BY id
"""


@dataclass
class Dataset:
    get_ids: list[int]
    patch_ids: list[int]
    refund_ids: list[int]
    deep_page: int
    deep_keyset: tuple[datetime, int] | None
    counts: dict[str, int]
    postgres_version: str
    load_seconds: float
    postmaster_pid: int | None = None


async def load_data(database_url: str, shape: DataShape) -> Dataset:
    started = time.monotonic()
    connection = await asyncpg.connect(asyncpg_dsn(database_url), timeout=30)
    try:
        async with connection.transaction():
            await connection.execute("SELECT setseed(0.42)")
            await connection.execute(LOAD_PAYMENTS, shape.payments, shape.user1_payments, shape.users)
            await connection.execute(LOAD_HISTORY)
            await connection.execute(LOAD_REFUNDS)
        await connection.execute("VACUUM (ANALYZE) payments, payment_status_history, refunds")
        user1 = await connection.fetch(
            "SELECT id, payment_status::text AS status, currency, amount_total FROM payments "
            "WHERE user_id = $1 ORDER BY id",
            BENCH_USER,
        )
        get_ids = [row["id"] for row in user1]
        failed = [row["id"] for row in user1 if row["status"] == "failed"]
        patch_ids = failed[:: max(1, len(failed) // PATCH_POOL_MAX)][:PATCH_POOL_MAX]
        # USD only: a 0.01 refund is not a valid amount of a currency without minor units (JPY).
        refundable = [
            row["id"]
            for row in user1
            if row["status"] == "succeeded"
            and row["currency"] == "USD"
            and row["amount_total"] >= REFUND_POOL_MIN_TOTAL
        ]
        refund_ids = refundable[:: max(1, len(refundable) // REFUND_POOL_MAX)][:REFUND_POOL_MAX]
        deep_page = max(2, min(FULL_DEEP_PAGE, (len(get_ids) * 8 // 10) // PAGE_SIZE))
        keyset_row = await connection.fetchrow(
            "SELECT created_at, id FROM payments WHERE user_id = $1 "
            "ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
            BENCH_USER,
            (deep_page - 1) * PAGE_SIZE - 1,
        )
        deep_keyset = (keyset_row["created_at"], keyset_row["id"]) if keyset_row is not None else None
        counts = {
            "payments": int(await connection.fetchval("SELECT count(*) FROM payments")),
            "users": int(await connection.fetchval("SELECT count(DISTINCT user_id) FROM payments")),
            "user1_payments": len(get_ids),
            "user1_succeeded": int(
                await connection.fetchval(
                    "SELECT count(*) FROM payments WHERE user_id = $1 AND payment_status = $2",
                    BENCH_USER,
                    LIST_STATUS_FILTER,
                )
            ),
            "patch_pool": len(patch_ids),
            "refund_pool": len(refund_ids),
            "history_rows": int(await connection.fetchval("SELECT count(*) FROM payment_status_history")),
            "refund_rows": int(await connection.fetchval("SELECT count(*) FROM refunds")),
        }
        version = str(await connection.fetchval("SHOW server_version"))
        # The postmaster (the backend's parent, while the backend lives): None when PostgreSQL is not
        # on this machine. Its CPU time, and its backends', counts as the benchmark's own.
        postmaster_pid = parent_pid(int(await connection.fetchval("SELECT pg_backend_pid()")))
    finally:
        await connection.close()
    if not get_ids or not patch_ids or not refund_ids:
        raise SystemExit("data load produced no payments (or no failed or no refundable ones) for user 1")
    dataset = Dataset(
        get_ids, patch_ids, refund_ids, deep_page, deep_keyset, counts, version, time.monotonic() - started
    )
    dataset.postmaster_pid = postmaster_pid
    return dataset


async def reset_patch_pool(database_url: str, ids: list[int]) -> None:
    """Put the PATCH pool back to `failed`, so every run starts with failed -> pending moves."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url), timeout=30)
    try:
        await connection.execute(
            "UPDATE payments SET payment_status = 'failed' WHERE id = ANY($1::bigint[]) AND payment_status <> 'failed'",
            ids,
        )
    finally:
        await connection.close()


async def reset_refund_pool(database_url: str, ids: list[int]) -> None:
    """Delete the refund pool's refunds and set its sums back to 0, so every run starts with the whole
    amount refundable (and the same number of refund rows). Only pending refunds are written by the
    benchmark, so the payments are still succeeded. Their refund.created events stay in the outbox,
    like the create scenario's payments."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url), timeout=30)
    try:
        async with connection.transaction():
            await connection.execute("DELETE FROM refunds WHERE payment_id = ANY($1::bigint[])", ids)
            await connection.execute(
                "UPDATE payments SET amount_refunded = 0, amount_refund_pending = 0 "
                "WHERE id = ANY($1::bigint[]) AND (amount_refunded <> 0 OR amount_refund_pending <> 0)",
                ids,
            )
    finally:
        await connection.close()


RESETS = {"patch_status": ("patch_ids", reset_patch_pool), "create_refund": ("refund_ids", reset_refund_pool)}


def reset_pool(ctx: Context, scenario: str) -> None:
    """Put a write scenario's pool back in its starting state (no-op for the other scenarios)."""
    if scenario in RESETS:
        attribute, reset = RESETS[scenario]
        asyncio.run(reset(ctx.database_url, getattr(ctx.dataset, attribute)))


def write_lua_data(path: Path, dataset: Dataset) -> None:
    def table(ids: list[int]) -> str:
        lines = [", ".join(str(i) for i in ids[start : start + 20]) for start in range(0, len(ids), 20)]
        return "{\n" + ",\n".join(lines) + "\n}"

    path.write_text(
        "-- generated by bench/run.py\nreturn {\n"
        f"get_ids = {table(dataset.get_ids)},\n"
        f"patch_ids = {table(dataset.patch_ids)},\n"
        f"refund_ids = {table(dataset.refund_ids)},\n"
        "}\n"
    )


# --------------------------------------------------------------------------------------------
# Servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def uvicorn_command(app: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
    ]


@dataclass
class Server:
    name: str
    port: int
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: workers are stopped with it
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up:\n{self.log_tail()}")
            try:
                status, _ = http_request("GET", f"{self.base_url}/health", {}, None, timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} did not answer /health within {SERVER_START_TIMEOUT:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn itself with one worker, else its children."""
        if self.process is None:
            return []
        main = self.process.pid
        children = [
            pid
            for pid in child_pids(main)
            if "resource_tracker" not in read_text(Path(f"/proc/{pid}/cmdline")).replace("\0", " ")
        ]
        return children or [main]

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"{self.name} did not stop after SIGTERM; killing it")
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=STOP_TIMEOUT)
        # Workers left behind by a supervisor that died first.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def child_pids(parent: int) -> list[int]:
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = read_text(entry / "stat")
        # pid (comm) state ppid ...; comm may hold spaces, so split after its closing parenthesis
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(parent):
            children.append(int(entry.name))
    return sorted(children)


def peak_rss_mb(pid: int) -> float | None:
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB", read_text(Path(f"/proc/{pid}/status")), re.MULTILINE)
    return round(int(match.group(1)) / 1024, 1) if match else None


def parent_pid(pid: int) -> int | None:
    stat = read_text(Path(f"/proc/{pid}/stat"))
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (one /proc scan)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_pid(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def cpu_jiffies(pid: int, *, reaped_children: bool = False) -> int:
    """utime + stime of a process (plus those of its exited, waited-for children)."""
    stat = read_text(Path(f"/proc/{pid}/stat"))
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 15:
        return 0
    total = int(fields[11]) + int(fields[12])
    return total + (int(fields[13]) + int(fields[14]) if reaped_children else 0)


def machine_jiffies() -> tuple[int, int]:
    """(all, busy) jiffies of every CPU since boot, from /proc/stat. Busy is user + nice + system,
    the time processes are charged with; all adds idle, iowait, irq, softirq and steal (guest time
    is already inside user)."""
    line = read_text(Path("/proc/stat")).splitlines()[:1]
    if not line or not line[0].startswith("cpu "):
        return 0, 0
    values = [int(value) for value in line[0].split()[1:9]]
    return sum(values), sum(values[:3])


class CpuAccount:
    """Splits the machine's CPU time during a measurement into the benchmark's own (wrk, both
    servers, this runner, the bench PostgreSQL) and everything else, which competed with it."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots

    def ours(self) -> int:
        total = cpu_jiffies(os.getpid(), reaped_children=True)  # this runner + finished wrk runs
        for root in self.roots:
            for pid in process_tree(root):
                total += cpu_jiffies(pid, reaped_children=pid == root)
        return total

    def snapshot(self) -> tuple[int, int, int]:
        all_jiffies, busy = machine_jiffies()
        return all_jiffies, busy, self.ours()

    @staticmethod
    def tree(root: int) -> int:
        return sum(cpu_jiffies(pid, reaped_children=pid == root) for pid in process_tree(root))

    @staticmethod
    def other_percent(before: tuple[int, int, int], after: tuple[int, int, int]) -> float | None:
        elapsed = after[0] - before[0]
        if elapsed <= 0:
            return None
        other = (after[1] - before[1]) - (after[2] - before[2])
        return round(max(0.0, 100.0 * other / elapsed), 1)


def http_request(
    method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float = 10
) -> tuple[int, bytes]:
    match = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    if match is None:
        raise ValueError(f"not an http URL: {url}")
    connection = http.client.HTTPConnection(match.group(1), int(match.group(2)), timeout=timeout)
    try:
        connection.request(method, match.group(3), body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Target:
    """One server as wrk and the preflight see it."""

    name: str  # "service" or "baseline"
    server: Server
    env: dict[str, str]  # BENCH_TOKEN or BENCH_USER_ID

    def headers(self) -> dict[str, str]:
        if "BENCH_TOKEN" in self.env:
            return {"Authorization": f"Bearer {self.env['BENCH_TOKEN']}"}
        return {"X-User-Id": self.env["BENCH_USER_ID"]}


@dataclass(frozen=True)
class Plan:
    """How one scenario is sent to one target."""

    script: str
    path: str | None = None  # static GET path (static_get.lua)


@dataclass
class Measurement:
    requests_per_second: float
    requests: int
    duration_seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p99_9_ms: float
    max_ms: float
    mean_ms: float
    non_2xx: int
    socket_errors: int
    errors: int
    preflight_status: int | None = None
    preflight_body: str | None = None
    other_cpu_percent: float | None = None  # share of all CPUs used by processes outside the benchmark
    server_cpu_percent: float | None = None  # the server's processes, in % of one core (100 = one core busy)


@dataclass
class ScenarioResult:
    name: str
    description: str
    supported: bool = True
    note: str | None = None
    service: Measurement | None = None
    baseline: Measurement | None = None
    ratio: float | None = None
    # every round's figures, per target; service and baseline hold each one's best round
    rounds: dict[str, list[dict[str, float]]] = field(default_factory=dict)


@dataclass
class Context:
    config: Config
    wrk: str
    database_url: str
    dataset: Dataset
    data_file: Path
    service_cursor_path: str | None
    cursor_note: str | None
    cpu: CpuAccount
    run_counter: list[int] = field(default_factory=lambda: [0])


DESCRIPTIONS = {
    "get_by_id": "GET /api/v1/payments/{id}, random ids among user 1's payments",
    "list_page1_filtered": f"GET /api/v1/payments/?payment_status={LIST_STATUS_FILTER}&size={PAGE_SIZE} (page 1)",
    "deep_page_offset": "GET /api/v1/payments/?page=<deep>&size=20 for user 1 (offset paging, with total)",
    "deep_page_cursor": "GET /api/v1/payments/?cursor=<same depth>&size=20 for user 1 (keyset paging)",
    "create": "POST /api/v1/payments/ with a unique payment_id and Idempotency-Key",
    "patch_status": "PATCH /api/v1/payments/{id}/status, failed <-> pending on a pool of user 1's payments",
    "create_refund": f"POST /api/v1/payments/{{id}}/refunds of {REFUND_AMOUNT} with an Idempotency-Key, random "
    "ids among a pool of user 1's succeeded USD payments (refunds reset before each run)",
    "get_by_id_2_workers": "GET /api/v1/payments/{id} as get_by_id, service and baseline with 2 workers each",
}


def plan_for(ctx: Context, scenario: str, target: str) -> Plan | None:
    list_path = "/api/v1/payments/?"
    if scenario in ("get_by_id", "get_by_id_2_workers"):
        return Plan("get_by_id.lua")
    if scenario == "list_page1_filtered":
        return Plan("static_get.lua", list_path + urlencode({"payment_status": LIST_STATUS_FILTER, "size": PAGE_SIZE}))
    if scenario == "deep_page_offset":
        return Plan("static_get.lua", list_path + urlencode({"page": ctx.dataset.deep_page, "size": PAGE_SIZE}))
    if scenario == "deep_page_cursor":
        if target == "service":
            return None if ctx.service_cursor_path is None else Plan("static_get.lua", ctx.service_cursor_path)
        keyset = ctx.dataset.deep_keyset
        if keyset is None:
            return None
        query = {"created_at": keyset[0].isoformat(), "id": keyset[1], "size": PAGE_SIZE}
        return Plan("static_get.lua", list_path + urlencode(query))
    if scenario == "create":
        return Plan("create.lua")
    if scenario == "patch_status":
        return Plan("patch_status.lua")
    if scenario == "create_refund":
        return Plan("refund.lua")
    raise ValueError(scenario)


def preflight(ctx: Context, scenario: str, target: Target, plan: Plan) -> tuple[int, bytes]:
    """One request like the ones wrk will send, to catch a harness mistake with a readable answer."""
    headers = {"Accept": "application/json", **target.headers()}
    base = target.server.base_url
    if plan.path is not None:
        return http_request("GET", base + plan.path, headers, None)
    if scenario in ("get_by_id", "get_by_id_2_workers"):
        return http_request("GET", f"{base}/api/v1/payments/{ctx.dataset.get_ids[0]}", headers, None)
    headers["Content-Type"] = "application/json"
    if scenario == "create":
        key = uuid.uuid4().hex
        headers["Idempotency-Key"] = f"bench-preflight-{key}"
        body = {
            "payment_id": f"pi_bench_preflight_{key}",
            "provider": "stripe",
            "currency": "USD",
            "amount_total": "125.50",
            "payment_method_types": ["card"],
            "customer_id": "cus_bench",
            "customer_email": "bench@example.com",
            "booking_id": "bk_bench_preflight",
            "property_id": "prop_1",
            "description": "Benchmark booking",
            "metadata": {"source": "bench"},
        }
        return http_request("POST", f"{base}/api/v1/payments/", headers, json.dumps(body).encode())
    if scenario == "patch_status":
        payment = ctx.dataset.patch_ids[0]
        answers = [
            http_request(
                "PATCH",
                f"{base}/api/v1/payments/{payment}/status",
                headers,
                json.dumps({"payment_status": status}).encode(),
            )
            for status in ("pending", "failed")
        ]
        bad = [answer for answer in answers if not 200 <= answer[0] < 300]
        return bad[0] if bad else answers[-1]
    if scenario == "create_refund":
        headers["Idempotency-Key"] = f"bench-preflight-{uuid.uuid4().hex}"
        refund = json.dumps({"amount": REFUND_AMOUNT, "reason": REFUND_REASON}).encode()
        return http_request("POST", f"{base}/api/v1/payments/{ctx.dataset.refund_ids[0]}/refunds", headers, refund)
    raise ValueError(scenario)


def run_wrk(ctx: Context, target: Target, plan: Plan, seconds: int) -> dict[str, Any]:
    ctx.run_counter[0] += 1
    run_id = f"{int(time.time())}{ctx.run_counter[0]:03d}{secrets.token_hex(2)}"
    env = {
        **os.environ,
        **target.env,
        "BENCH_LUA_DIR": str(LUA_DIR),
        "BENCH_DATA": str(ctx.data_file),
        "BENCH_RUN_ID": run_id,
        "BENCH_THREADS": str(ctx.config.threads),
    }
    if plan.path is not None:
        env["BENCH_PATH"] = plan.path
    command = [
        ctx.wrk,
        "-t",
        str(ctx.config.threads),
        "-c",
        str(ctx.config.connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(LUA_DIR / plan.script),
        target.server.base_url,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
            return parsed
    raise RuntimeError(f"wrk printed no result (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")


def measurement(raw: dict[str, Any]) -> Measurement:
    latency = raw["latency_us"]
    seconds = raw["duration_us"] / 1e6
    socket_errors = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
    return Measurement(
        requests_per_second=round(raw["requests"] / seconds, 1) if seconds > 0 else 0.0,
        requests=raw["requests"],
        duration_seconds=round(seconds, 2),
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        p99_9_ms=latency["p99_9"] / 1000,
        max_ms=latency["max"] / 1000,
        mean_ms=round(latency["mean"] / 1000, 3),
        non_2xx=raw["non_2xx_3xx"],
        socket_errors=socket_errors,
        errors=raw["non_2xx_3xx"] + socket_errors,
    )


def measure(ctx: Context, scenario: str, target: Target, plan: Plan) -> Measurement:
    reset_pool(ctx, scenario)
    status, body = preflight(ctx, scenario, target, plan)
    if not 200 <= status < 300:
        log(f"WARNING {scenario} on the {target.name}: preflight answered {status}: {body[:300]!r}")
    if ctx.config.warmup > 0:
        run_wrk(ctx, target, plan, ctx.config.warmup)
    reset_pool(ctx, scenario)
    server_pid = target.server.process.pid if target.server.process is not None else None
    before = ctx.cpu.snapshot()
    server_before = (time.monotonic(), CpuAccount.tree(server_pid) if server_pid else 0)
    result = measurement(run_wrk(ctx, target, plan, ctx.config.duration))
    result.other_cpu_percent = CpuAccount.other_percent(before, ctx.cpu.snapshot())
    if server_pid is not None:
        seconds = time.monotonic() - server_before[0]
        used = (CpuAccount.tree(server_pid) - server_before[1]) / os.sysconf("SC_CLK_TCK")
        result.server_cpu_percent = round(100.0 * used / seconds, 1) if seconds > 0 else None
    result.preflight_status = status
    if not 200 <= status < 300:
        result.preflight_body = body[:500].decode(errors="replace")
    return result


def detect_cursor(service: Target, deep_page: int) -> tuple[str | None, str | None]:
    """The service's deep cursor page, if its list answers with `next_cursor`: the cursor after page
    deep_page - 1 selects the same rows as the offset page deep_page."""
    query = urlencode({"page": deep_page - 1, "size": PAGE_SIZE})
    status, body = http_request("GET", f"{service.server.base_url}/api/v1/payments/?{query}", service.headers(), None)
    if status != 200:
        return None, f"list endpoint answered {status} while detecting cursor support"
    try:
        document = json.loads(body)
    except ValueError:
        return None, "list endpoint did not answer JSON"
    if not isinstance(document, dict) or "next_cursor" not in document:
        return None, "not supported by the service yet (no next_cursor in the list response)"
    cursor = document["next_cursor"]
    if not isinstance(cursor, str) or not cursor:
        return None, "the service returned no next_cursor at that depth"
    return "/api/v1/payments/?" + urlencode({"cursor": cursor, "size": PAGE_SIZE}), None


# --------------------------------------------------------------------------------------------
# Reporting


LIST_SCENARIOS = ("list_page1_filtered", "deep_page_offset", "deep_page_cursor")


def page_ids(target: Target, path: str) -> list[int] | str:
    status, body = http_request("GET", target.server.base_url + path, target.headers(), None)
    if status != 200:
        return f"HTTP {status}"
    try:
        return [int(item["id"]) for item in json.loads(body)["items"]]
    except (ValueError, KeyError, TypeError):
        return "unexpected body"


def check_same_rows(ctx: Context, service: Target, baseline: Target) -> dict[str, str]:
    """Each list scenario must return the same payments from both servers (else the ratio compares
    different work). Returns scenario -> "same N rows" or what differs."""
    checks: dict[str, str] = {}
    for scenario in LIST_SCENARIOS:
        if scenario not in ctx.config.scenarios:
            continue
        service_plan, baseline_plan = plan_for(ctx, scenario, "service"), plan_for(ctx, scenario, "baseline")
        if service_plan is None or baseline_plan is None or service_plan.path is None or baseline_plan.path is None:
            continue
        ours, theirs = page_ids(service, service_plan.path), page_ids(baseline, baseline_plan.path)
        if ours == theirs and isinstance(ours, list) and ours:
            checks[scenario] = f"same {len(ours)} rows"
        else:
            checks[scenario] = f"DIFFERENT: service {ours!r:.120} vs baseline {theirs!r:.120}"
            log(f"WARNING {scenario}: service and baseline return different rows: {checks[scenario]}")
    return checks


def run_scenario(ctx: Context, scenario: str, service: Target, baseline: Target) -> ScenarioResult:
    """Service and baseline, alternately for the configured rounds; each one's best run is kept."""
    config = ctx.config
    cursor_note = ctx.cursor_note
    result = ScenarioResult(scenario, DESCRIPTIONS[scenario])
    for round_number, target in [(n, t) for n in range(1, config.rounds + 1) for t in (service, baseline)]:
        plan = plan_for(ctx, scenario, target.name)
        if plan is None:
            if target.name == "service":
                result.supported = False
                result.note = cursor_note or "not supported by the service yet"
            continue
        log(f"{scenario}: {target.name} round {round_number} ({config.warmup} s warm-up + {config.duration} s)")
        measured = measure(ctx, scenario, target, plan)
        result.rounds.setdefault(target.name, []).append(
            {
                "requests_per_second": measured.requests_per_second,
                "p99_ms": measured.p99_ms,
                "errors": measured.errors,
            }
        )
        best: Measurement | None = getattr(result, target.name)
        if best is None or measured.requests_per_second > best.requests_per_second:
            setattr(result, target.name, measured)
        log(
            f"{scenario}: {target.name} {measured.requests_per_second:,.1f} req/s, "
            f"p50 {measured.p50_ms:.2f} ms, p99 {measured.p99_ms:.2f} ms, errors {measured.errors}, "
            f"server CPU {fmt(measured.server_cpu_percent, 0)}% of a core, "
            f"other processes {fmt(measured.other_cpu_percent, 0)}% of the machine"
        )
    if result.service and result.baseline and result.baseline.requests_per_second > 0:
        result.ratio = round(result.service.requests_per_second / result.baseline.requests_per_second, 3)
    if result.service and result.service.errors:
        extra = f"service answered {result.service.non_2xx} non-2xx, {result.service.socket_errors} socket errors"
        result.note = f"{result.note}; {extra}" if result.note else extra
    errors_in_other_rounds = sum(int(r["errors"]) for r in result.rounds.get("service", [])) - (
        result.service.errors if result.service else 0
    )
    if errors_in_other_rounds:
        extra = f"service had {errors_in_other_rounds} errors in its other rounds"
        result.note = f"{result.note}; {extra}" if result.note else extra
    return result


def run_with_workers(
    ctx: Context, scenario: str, workers: int, service_setup: tuple[str, dict[str, str]], baseline_env: dict[str, str]
) -> ScenarioResult:
    """`scenario` on a fresh service and baseline with `workers` uvicorn workers each."""
    token, service_env = service_setup
    service_port, baseline_port = free_port(), free_port()
    service_server = Server(
        "service",
        service_port,
        uvicorn_command("app.main:app", service_port, workers),
        WORK_DIR / f"service-{workers}-workers.log",
    )
    baseline_server = Server(
        "baseline",
        baseline_port,
        uvicorn_command("bench.baseline_app:app", baseline_port, workers),
        WORK_DIR / f"baseline-{workers}-workers.log",
    )
    try:
        service_server.start(service_env)
        baseline_server.start(baseline_env)
        for server in (service_server, baseline_server):
            server.wait_ready()
        roots = [server.process.pid for server in (service_server, baseline_server) if server.process is not None]
        if ctx.dataset.postmaster_pid is not None:
            roots.append(ctx.dataset.postmaster_pid)
        service = Target("service", service_server, {"BENCH_TOKEN": token})
        baseline = Target("baseline", baseline_server, {"BENCH_USER_ID": str(BENCH_USER)})
        return run_scenario(replace(ctx, cpu=CpuAccount(roots)), scenario, service, baseline)
    finally:
        for server in (service_server, baseline_server):
            server.stop()


def cpu_model() -> str:
    for line in read_text(Path("/proc/cpuinfo")).splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_busy_percent(seconds: float = 1.0) -> float | None:
    """How busy the whole machine's CPUs are over `seconds` (from /proc/stat): measured while none of
    the benchmark's processes run, it tells whether something else competes for the CPUs."""
    first = machine_jiffies()
    time.sleep(seconds)
    second = machine_jiffies()
    if second[0] <= first[0]:
        return None
    return round(100.0 * (second[1] - first[1]) / (second[0] - first[0]), 1)


def memory_total_gb() -> float | None:
    match = re.search(r"^MemTotal:\s+(\d+)\s+kB", read_text(Path("/proc/meminfo")), re.MULTILINE)
    return round(int(match.group(1)) / 1024 / 1024, 1) if match else None


def git_revision() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app", "alembic"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+uncommitted changes in app/ or alembic/" if dirty else "")


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(results: list[ScenarioResult]) -> str:
    header = (
        "scenario",
        "svc req/s",
        "svc p50 ms",
        "svc p99 ms",
        "svc errors",
        "base req/s",
        "base p50 ms",
        "base p99 ms",
        "base errors",
        "svc/base",
        "other cpu%",
    )

    def cells(measured: Measurement | None) -> tuple[str, str, str, str]:
        if measured is None:
            return "-", "-", "-", "-"
        return (
            fmt(measured.requests_per_second),
            fmt(measured.p50_ms, 2),
            fmt(measured.p99_ms, 2),
            str(measured.errors),
        )

    rows: list[tuple[str, ...]] = [header]
    for result in results:
        service = cells(result.service)
        if not result.supported and result.service is None:
            service = ("n/a", "", "", "")
        ratio = fmt(result.ratio, 2) if result.ratio is not None else ("n/a" if not result.supported else "-")
        other = "/".join(
            fmt(measured.other_cpu_percent, 0) if measured is not None else "-"
            for measured in (result.service, result.baseline)
        )
        rows.append((result.name, *service, *cells(result.baseline), ratio, other))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        aligned = (cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        lines.append("  ".join(aligned))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    notes = [f"  {result.name}: {result.note}" for result in results if result.note]
    busy = [
        result.name
        for result in results
        for measured in (result.service, result.baseline)
        if measured is not None and (measured.other_cpu_percent or 0) > OTHER_CPU_WARNING
    ]
    if busy:
        notes.append(
            f"  other processes used more than {OTHER_CPU_WARNING:.0f}% of the CPUs during "
            f"{', '.join(dict.fromkeys(busy))}: those numbers are depressed; rerun on a quiet machine"
        )
    legend = "other cpu% = CPU share used by processes outside the benchmark during the measured runs (svc/base)"
    return "\n".join(lines + ["", legend] + (["", "notes:", *notes] if notes else []))


def write_results(document: dict[str, Any], smoke: bool) -> list[Path]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, default=str) + "\n"
    if smoke:
        paths = [RESULTS_DIR / "smoke-latest.json"]
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        paths = [RESULTS_DIR / f"{stamp}.json", RESULTS_DIR / "latest.json"]
    for path in paths:
        path.write_text(text)
    return paths


# --------------------------------------------------------------------------------------------
# Main


def mint_token(secret_key: str, database_url: str) -> str:
    from app.core.config import Settings
    from app.core.security import create_access_token

    settings = Settings(environment="production", secret_key=SecretStr(secret_key), database_url=database_url)
    # A trusted backend's token (the booking service's), for every scenario: status moves and refunds
    # are for backends (a user's token gets 403 on POST .../refunds), and the per-user write limit would
    # otherwise stop the create scenario after its first 120 requests.
    roles = [settings.service_role]
    return create_access_token(BENCH_USER, settings, roles=roles, expires_in=timedelta(hours=6))


def run(config: Config) -> int:
    started = time.monotonic()
    wrk = ensure_wrk()
    busy_before = cpu_busy_percent()
    if busy_before is not None and busy_before > 15:
        log(f"WARNING the machine is already {busy_before:.0f}% busy before the benchmark: numbers will be noisy")
    WORK_DIR.mkdir(parents=True, exist_ok=True)

    admin_url, database_description = server_url()
    database_url = with_database(admin_url, DATABASE_NAME)
    log(f"creating database {DATABASE_NAME} and migrating it")
    asyncio.run(recreate_database(admin_url, DATABASE_NAME))
    migrate(database_url)
    shape = config.data
    log(f"loading {shape.payments:,} payments over {shape.users:,} users (user 1: {shape.user1_payments:,})")
    dataset = asyncio.run(load_data(database_url, shape))
    log(f"loaded in {dataset.load_seconds:.1f} s: {dataset.counts}")
    data_file = WORK_DIR / "data.lua"
    write_lua_data(data_file, dataset)

    secret_key = secrets.token_urlsafe(48)  # 64 characters
    token = mint_token(secret_key, database_url)
    service_env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "SECRET_KEY": secret_key,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "INFO",  # the production default: one JSON access line per request
        "DB_POOL_SIZE": str(config.pool_size),
    }
    baseline_env = {
        **os.environ,
        "BASELINE_DATABASE_URL": database_url,
        "BASELINE_POOL_SIZE": str(config.pool_size),
    }
    service_port, baseline_port = free_port(), free_port()
    service_server = Server(
        "service",
        service_port,
        uvicorn_command("app.main:app", service_port, config.workers),
        WORK_DIR / "service.log",
    )
    baseline_server = Server(
        "baseline",
        baseline_port,
        uvicorn_command("bench.baseline_app:app", baseline_port, config.workers),
        WORK_DIR / "baseline.log",
    )
    service = Target("service", service_server, {"BENCH_TOKEN": token})
    baseline = Target("baseline", baseline_server, {"BENCH_USER_ID": str(BENCH_USER)})

    results: list[ScenarioResult] = []
    rss: dict[str, Any] = {}
    same_rows: dict[str, str] = {}
    try:
        for server, env in ((service_server, service_env), (baseline_server, baseline_env)):
            server.start(env)
        for server in (service_server, baseline_server):
            server.wait_ready()
        log(f"service on {service_server.base_url}, baseline on {baseline_server.base_url}")
        status, body = http_request("GET", f"{baseline_server.base_url}/health", {}, None)
        baseline_json = json.loads(body).get("json", "?") if status == 200 else "?"

        cursor_path, cursor_note = (None, None)
        if "deep_page_cursor" in config.scenarios:
            cursor_path, cursor_note = detect_cursor(service, dataset.deep_page)
        roots = [server.process.pid for server in (service_server, baseline_server) if server.process is not None]
        if dataset.postmaster_pid is not None:
            roots.append(dataset.postmaster_pid)
        cpu = CpuAccount(roots)
        ctx = Context(config, wrk, database_url, dataset, data_file, cursor_path, cursor_note, cpu)
        same_rows = check_same_rows(ctx, service, baseline)

        for scenario in config.scenarios:
            if scenario not in MULTI_WORKER_SCENARIOS:
                results.append(run_scenario(ctx, scenario, service, baseline))

        for name, server in (("service", service_server), ("baseline", baseline_server)):
            pids = server.worker_pids()
            rss[name] = {
                "workers": len(pids),
                "peak_rss_mb_per_worker": [peak_rss_mb(pid) for pid in pids],
            }
    finally:
        for server in (service_server, baseline_server):
            server.stop()

    for scenario, workers in MULTI_WORKER_SCENARIOS.items():
        if scenario in config.scenarios:
            results.append(run_with_workers(ctx, scenario, workers, (token, service_env), baseline_env))

    busy_after = cpu_busy_percent()
    service_rss = rss.get("service", {}).get("peak_rss_mb_per_worker", [])
    baseline_rss = rss.get("baseline", {}).get("peak_rss_mb_per_worker", [])
    print()
    print(
        f"payment-service benchmark ({'smoke' if config.smoke else 'full'}): {dataset.counts['payments']:,} payments, "
        f"user 1 has {dataset.counts['user1_payments']:,}; {config.connections} connections, {config.threads} threads, "
        f"{config.warmup} s warm-up + {config.duration} s per scenario and server, best of {config.rounds} "
        f"alternating round(s); deep page = {dataset.deep_page}"
    )
    print()
    print(table(results))
    print()
    print(f"peak RSS per worker (VmHWM): service {service_rss} MB, baseline {baseline_rss} MB")
    print(
        f"machine CPU busy without the benchmark: {fmt(busy_before)}% before, {fmt(busy_after)}% after "
        "(more than a few % means something else competed for the CPUs)"
    )
    rated = [result for result in results if result.ratio is not None]
    if rated:
        weakest = min(rated, key=lambda result: result.ratio or 0.0)
        print(f"weakest scenario for the service (lowest svc/base): {weakest.name} ({weakest.ratio:.2f})")

    document: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": "smoke" if config.smoke else "full",
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(),
            "memory_gb": memory_total_gb(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgres": dataset.postgres_version,
            "wrk": wrk_version(wrk),
            "cpu_busy_percent_before": busy_before,
            "cpu_busy_percent_after": busy_after,
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
        },
        "code": {"git": git_revision()},
        "config": {
            **{key: value for key, value in asdict(config).items() if key != "data"},
            "data": asdict(config.data),
            "loaded": dataset.counts,
            "load_seconds": round(dataset.load_seconds, 2),
            "database": database_description,
            "page_size": PAGE_SIZE,
            "deep_page": dataset.deep_page,
            "list_status_filter": LIST_STATUS_FILTER,
            "caller_user_id": BENCH_USER,
            "wrk_timeout": WRK_TIMEOUT,
            "service_command": " ".join(service_server.command[1:]),
            "service_env": {"ENVIRONMENT": "production", "SECRET_KEY": "<64 random chars>", "LOG_LEVEL": "INFO"}
            | {"DB_POOL_SIZE": config.pool_size},
            "baseline_command": " ".join(baseline_server.command[1:]),
            "baseline_pool": {"min_size": config.pool_size, "max_size": config.pool_size},
            "baseline_json": baseline_json,
            "list_rows_check": same_rows,
        },
        "memory": rss,
        "scenarios": [asdict(result) for result in results],
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    for path in write_results(document, config.smoke):
        print(f"results: {path.relative_to(REPO)}")
    print(f"elapsed: {time.monotonic() - started:.0f} s")
    failing = [result.name for result in results if any(r["errors"] for r in result.rounds.get("service", []))]
    if config.strict and failing:
        print(f"--strict: the service had errors in {', '.join(failing)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        return run(config)
    except RuntimeError as exc:  # a server that would not start, wrk without a result: no traceback needed
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
