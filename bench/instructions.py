"""Instructions per request, counted by valgrind: the CPU cost of a request, measured in a way that
does not move with the machine's load. (On a shared VM, wrk's req/s for the same code moved by a
quarter between back-to-back runs; a count of instructions repeats within 1%.)

    python -m bench.instructions              # GET by id, list, create, PATCH status and refund; both apps
    python -m bench.instructions --scenarios create_refund
    make bench-instructions

Each app is called as an ASGI app in one process, one request after another (no uvicorn, no HTTP
client; the database statements are real, on a small benchmark database), and runs twice under
`valgrind --tool=cachegrind --cache-sim=no`: with a few requests and with more. The difference in
instructions divided by the difference in requests is one request's cost, start-up excluded.
Not counted: kernel time (system calls) and uvicorn's HTTP parsing, which both apps pay alike, so
the ratio here is lower than the ratio of req/s under wrk. Needs valgrind (apt-get install valgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

from bench.run import (
    BENCH_USER,
    LIST_STATUS_FILTER,
    PAGE_SIZE,
    REFUND_AMOUNT,
    REFUND_POOL_MIN_TOTAL,
    REFUND_REASON,
    DataShape,
    load_data,
    log,
    migrate,
    recreate_database,
    server_url,
    with_database,
)

DATABASE_NAME = "payment_bench_instructions"
SCENARIOS = ("get_by_id", "list", "create", "patch_status", "create_refund")
APPS = ("service", "baseline")
FEW, MANY = 100, 300  # requests per counted run (under valgrind a request is ~50x slower)
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")

Message = dict[str, Any]


async def _call(app: Any, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> int:
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> Message:
        if pending:
            return pending.pop()
        await asyncio.Event().wait()  # no disconnect: the app never needs to wait here
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _requests(app_name: str, scenario: str, count: int) -> None:
    """The inner run: `count` requests of one scenario, one after another, each checked."""
    import asyncpg  # type: ignore[import-untyped]

    if app_name == "service":
        from app.core.config import get_settings
        from app.core.security import create_access_token
        from app.main import create_app

        settings = get_settings()
        app: Any = create_app(settings)
        # A trusted backend's token, as in bench/run.py (status moves and refunds are for backends).
        token = create_access_token(BENCH_USER, settings, roles=[settings.service_role], expires_in=timedelta(hours=1))
        caller = [(b"authorization", f"Bearer {token}".encode())]
    else:
        from bench.baseline_app import app

        caller = [(b"x-user-id", str(BENCH_USER).encode())]
    dsn = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    ids = [row["id"] for row in await connection.fetch("SELECT id FROM payments WHERE user_id = $1", BENCH_USER)]
    # PATCH status toggles the caller's failed and pending payments (both moves are legal).
    toggled = {
        row["id"]: row["payment_status"]
        for row in await connection.fetch(
            "SELECT id, payment_status::text FROM payments WHERE user_id = $1 AND payment_status IN "
            "('failed', 'pending') ORDER BY id LIMIT 50",
            BENCH_USER,
        )
    }
    # Refunds of 0.01 spread over succeeded USD payments of 100 or more (10,000 refunds each at least).
    refunded = [
        row["id"]
        for row in await connection.fetch(
            "SELECT id FROM payments WHERE user_id = $1 AND payment_status = 'succeeded' AND currency = 'USD' "
            "AND amount_total >= $2 ORDER BY id LIMIT 50",
            BENCH_USER,
            REFUND_POOL_MIN_TOTAL,
        )
    ]
    await connection.close()
    run = uuid.uuid4().hex[:12]

    async def one(number: int) -> int:
        if scenario == "get_by_id":
            return await _call(app, "GET", f"/api/v1/payments/{ids[number % len(ids)]}", caller)
        if scenario == "list":
            target = f"/api/v1/payments/?payment_status={LIST_STATUS_FILTER}&size={PAGE_SIZE}"
            return await _call(app, "GET", target, caller)
        if scenario == "patch_status":
            payment = list(toggled)[number % len(toggled)]
            toggled[payment] = "pending" if toggled[payment] == "failed" else "failed"
            body = json.dumps({"payment_status": toggled[payment]}).encode()
            json_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            return await _call(app, "PATCH", f"/api/v1/payments/{payment}/status", caller + json_headers, body)
        if scenario == "create_refund":
            body = json.dumps({"amount": REFUND_AMOUNT, "reason": REFUND_REASON}).encode()
            refund_headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"idempotency-key", f"instr-refund-{run}-{number}".encode()),
            ]
            target = f"/api/v1/payments/{refunded[number % len(refunded)]}/refunds"
            return await _call(app, "POST", target, caller + refund_headers, body)
        body = json.dumps(
            {
                "payment_id": f"pi_instr_{run}_{number}",
                "provider": "stripe",
                "currency": "USD",
                "amount_total": "120.50",
                "payment_method_types": ["card"],
                "customer_id": "cus_bench",
                "customer_email": "bench@example.com",
                "booking_id": f"bk_{number}",
                "property_id": "prop_1",
                "description": "Benchmark booking",
                "metadata": {"source": "bench"},
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"idempotency-key", f"instr-{run}-{number}".encode()),
        ]
        return await _call(app, "POST", "/api/v1/payments/", caller + headers, body)

    async with app.router.lifespan_context(app):
        for number in range(count):
            status = await one(number)
            if status not in (200, 201):
                raise SystemExit(f"{app_name} {scenario}: request {number} answered {status}")


def _count_instructions(app_name: str, scenario: str, requests: int, env: dict[str, str]) -> int:
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--inner",
        app_name,
        scenario,
        str(requests),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = _REFS.search(result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"{app_name} {scenario} under valgrind failed:\n{result.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def per_request(app_name: str, scenario: str, env: dict[str, str]) -> int:
    few = _count_instructions(app_name, scenario, FEW, env)
    many = _count_instructions(app_name, scenario, MANY, env)
    return (many - few) // (MANY - FEW)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"subset of {','.join(SCENARIOS)}")
    parser.add_argument("--inner", nargs=3, metavar=("APP", "SCENARIO", "REQUESTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        import uvloop  # as the servers run (uvicorn --loop uvloop): asyncio's own loop costs more per await

        app_name, scenario, count = args.inner
        uvloop.run(_requests(app_name, scenario, int(count)))
        return 0
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    if not scenarios or any(name not in SCENARIOS for name in scenarios):
        parser.error(f"choose scenarios from {','.join(SCENARIOS)}")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind (Debian/Ubuntu)")
    started = time.monotonic()
    admin_url, description = server_url()
    database_url = with_database(admin_url, DATABASE_NAME)
    log(f"database {DATABASE_NAME} on {description}: migrating and loading 1,000 payments")
    asyncio.run(recreate_database(admin_url, DATABASE_NAME))
    migrate(database_url)
    asyncio.run(load_data(database_url, DataShape(1_000, 10, 200)))
    secret_key = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "SECRET_KEY": secret_key,
        "DATABASE_URL": database_url,
        "BASELINE_DATABASE_URL": database_url,
        "LOG_LEVEL": "INFO",  # as in production: one JSON access line per request
        "PYTHONHASHSEED": "0",
    }
    rows = []
    for scenario in scenarios:
        counts = {}
        for app_name in APPS:
            log(f"{scenario}: {app_name} under valgrind ({FEW} and {MANY} requests)")
            counts[app_name] = per_request(app_name, scenario, env)
        rows.append((scenario, counts["service"], counts["baseline"]))
    print()
    print(f"{'scenario':<13} {'service instr/req':>18} {'baseline instr/req':>19} {'baseline/service':>17}")
    for scenario, service, baseline in rows:
        print(f"{scenario:<13} {service:>18,} {baseline:>19,} {baseline / service:>17.2f}")
    print(f"\nelapsed: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
