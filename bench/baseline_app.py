"""The benchmark's baseline: the same requests as the service, answered as cheaply as Python can.

Starlette + one asyncpg pool (prepared statements, asyncpg's default) + orjson when installed (else
the standard json module). No ORM, no validation, no JWT, no idempotency bookkeeping, no status
rules. It exists only so `bench/run.py` can report the service's throughput as a fraction of what a
bare Python stack does with the same database, the same SQL shape and the same uvicorn flags.

What it does per request, so the ratio is read against the right thing:

- GET /api/v1/payments/{id}: one SELECT of the row (owner check in the WHERE), JSON, ETag.
- GET /api/v1/payments/: the page (LIMIT size+1, newest first on (created_at, id)) and, for offset
  pages, a count(*) for `total` (as the service does by default). Keyset pages (`created_at` and
  `id` query params, `(created_at, id) < ($1, $2)`) skip the count, like the service's cursor pages.
- POST /api/v1/payments/: one statement: INSERT ... ON CONFLICT DO NOTHING RETURNING *, plus the
  creation row of payment_status_history in the same statement (a data-modifying CTE).
- PATCH /api/v1/payments/{id}/status: one statement: lock the row, UPDATE ... SET payment_status
  RETURNING *, and the history row (again one CTE); no transition rules.
- POST /api/v1/payments/{id}/refunds: one statement: a conditional UPDATE of the payment's pending
  sum (only a succeeded payment with enough left to refund), the refund row from its RETURNING, and
  the refund.created event in the outbox (see REFUND below for why one statement is as safe as the
  service's locked transaction); a pending refund only, no Idempotency-Key bookkeeping.

The caller is the `X-User-Id` header (default 1); there is no authentication.

Environment: BASELINE_DATABASE_URL (postgresql+asyncpg://... or postgresql://...),
BASELINE_POOL_SIZE (min = max, default 10).

    uvicorn bench.baseline_app:app --host 127.0.0.1 --port 8100 --workers 1 --loop uvloop \
        --http httptools --no-access-log
"""

import importlib
import importlib.util
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

JSON_MEDIA_TYPE = "application/json"
DEFAULT_POOL_SIZE = 10


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _pick_json() -> tuple[str, Callable[[object], bytes], Callable[[str | bytes], Any]]:
    if importlib.util.find_spec("orjson") is not None:
        orjson = importlib.import_module("orjson")

        def orjson_dumps(value: object) -> bytes:
            return bytes(orjson.dumps(value, default=_json_default))

        return "orjson", orjson_dumps, orjson.loads

    def json_dumps(value: object) -> bytes:
        return json.dumps(value, default=_json_default, separators=(",", ":")).encode()

    return "json", json_dumps, json.loads


JSON_LIBRARY, dumps, loads = _pick_json()

COLUMNS = (
    "id",
    "payment_id",
    "checkout_session_id",
    "payment_method_id",
    "payment_method_types",
    "payment_status",
    "provider",
    "currency",
    "amount_total",
    "customer_id",
    "customer_email",
    "booking_id",
    "property_id",
    "user_id",
    "description",
    "metadata",
    "version",
    "created_at",
    "updated_at",
)
SELECT_LIST = ", ".join(COLUMNS)
QUALIFIED_SELECT_LIST = ", ".join(f"payments.{column}" for column in COLUMNS)

GET_ONE = f"SELECT {SELECT_LIST} FROM payments WHERE id = $1 AND user_id = $2"  # noqa: S608

INSERTED_COLUMNS = (
    "payment_id",
    "checkout_session_id",
    "payment_method_id",
    "payment_method_types",
    "payment_status",
    "provider",
    "currency",
    "amount_total",
    "customer_id",
    "customer_email",
    "booking_id",
    "property_id",
    "description",
    "metadata",
    "user_id",
)
_placeholders = ", ".join(f"${n}" for n in range(1, len(INSERTED_COLUMNS) + 1))
CREATE = (
    f"WITH p AS (INSERT INTO payments ({', '.join(INSERTED_COLUMNS)}) VALUES ({_placeholders}) "  # noqa: S608
    f"ON CONFLICT DO NOTHING RETURNING {SELECT_LIST}), "
    "h AS (INSERT INTO payment_status_history (payment_id, from_status, to_status, actor) "
    f"SELECT id, NULL, payment_status, ${len(INSERTED_COLUMNS) + 1} FROM p) "
    "SELECT * FROM p"
)

CHANGE_STATUS = (
    "WITH old AS (SELECT id, payment_status FROM payments WHERE id = $2 AND user_id = $3 FOR UPDATE), "  # noqa: S608
    "p AS (UPDATE payments SET payment_status = $1, version = payments.version + 1, updated_at = now() "
    f"FROM old WHERE payments.id = old.id RETURNING {QUALIFIED_SELECT_LIST}), "
    "h AS (INSERT INTO payment_status_history (payment_id, from_status, to_status, actor) "
    "SELECT old.id, old.payment_status, $1, $4 FROM old) "
    "SELECT * FROM p"
)


REFUND_COLUMNS = (
    "id",
    "payment_id",
    "provider",
    "refund_id",
    "amount",
    "currency",
    "status",
    "reason",
    "metadata",
    "failure_reason",
    "actor",
    "request_id",
    "version",
    "created_at",
    "updated_at",
)
# A refund in one statement (one implicit transaction), with the service's guarantees: the refund is
# written only for a succeeded payment whose amount_total - amount_refunded - amount_refund_pending
# covers it, and concurrent refunds of one payment cannot both pass on the same sums. The service gets
# that with a transaction: SELECT ... FOR UPDATE, the checks in Python, INSERT the refund, UPDATE the
# sums, INSERT the event, COMMIT, each its own round trip. The simplest correct way on bare asyncpg is
# one statement instead, as for create and PATCH above: the UPDATE's WHERE is the check. The UPDATE
# locks the row, and when another transaction changed the row first, PostgreSQL (READ COMMITTED) waits
# for it and evaluates the WHERE again on the committed row, so the check always sees the latest sums.
# No row updated means nothing written (the refund and event INSERTs select from the UPDATE's
# RETURNING). The payments' CHECK constraint (refunded + pending <= amount_total) would refuse an
# overdraw anyway. Like the service, the refund row, the payment's sums (+ version) and the
# refund.created event (the refund row as JSON) are written together or not at all. A trusted backend
# records refunds, so like the service's service-role caller there is no owner check. Not done (the
# baseline validates nothing): the amount's minor-unit digits per currency.
REFUND = (
    "WITH p AS (UPDATE payments SET amount_refund_pending = amount_refund_pending + $2::numeric, "  # noqa: S608
    "version = version + 1, updated_at = now() "
    "WHERE id = $1 AND payment_status = 'succeeded' AND $2::numeric > 0 "
    "AND amount_total - amount_refunded - amount_refund_pending >= $2 "
    "RETURNING id, provider, currency), "
    "r AS (INSERT INTO refunds (payment_id, provider, amount, currency, status, reason, metadata, actor) "
    "SELECT id, provider, $2, currency, 'pending', $3::refund_reason, $4::jsonb, $5::varchar FROM p "
    f"RETURNING {', '.join(REFUND_COLUMNS)}), "
    "e AS (INSERT INTO events (type, payment_id, refund_id, snapshot, actor) "
    "SELECT 'refund.created', payment_id, id, row_to_json(r)::text, actor FROM r) "
    "SELECT * FROM r"
)
# Only when REFUND wrote nothing: why (404 or 409).
REFUND_REFUSED = (
    "SELECT payment_status::text AS status, amount_total - amount_refunded - amount_refund_pending AS refundable "
    "FROM payments WHERE id = $1"
)


def _list_sql(*, with_status: bool, keyset: bool) -> tuple[str, str]:
    """The page query and its count query for one combination of filters."""
    conditions = ["user_id = $1"]
    if with_status:
        conditions.append("payment_status = $2")
    where = " AND ".join(conditions)
    next_param = len(conditions) + 1
    if keyset:
        page = (
            f"SELECT {SELECT_LIST} FROM payments WHERE {where} "  # noqa: S608
            f"AND (created_at, id) < (${next_param}, ${next_param + 1}) "
            f"ORDER BY created_at DESC, id DESC LIMIT ${next_param + 2}"
        )
    else:
        page = (
            f"SELECT {SELECT_LIST} FROM payments WHERE {where} "  # noqa: S608
            f"ORDER BY created_at DESC, id DESC LIMIT ${next_param} OFFSET ${next_param + 1}"
        )
    count = f"SELECT count(*) FROM payments WHERE {where}"  # noqa: S608
    return page, count


LIST_SQL = {
    (with_status, keyset): _list_sql(with_status=with_status, keyset=keyset)
    for with_status in (False, True)
    for keyset in (False, True)
}


def _json_response(content: object, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(content), status_code, headers=headers, media_type=JSON_MEDIA_TYPE)


def _payment_response(row: Any, status_code: int = 200) -> Response:
    return _json_response(dict(row), status_code, headers={"ETag": f'"{row["version"]}"'})


def _not_found() -> Response:
    return _json_response({"detail": "Payment not found"}, 404)


def _caller(request: Request) -> int:
    return int(request.headers.get("x-user-id", "1"))


def _pool(request: Request) -> Any:
    return request.app.state.pool


async def health(request: Request) -> Response:
    return _json_response({"status": "healthy", "service": "baseline", "json": JSON_LIBRARY})


async def get_payment(request: Request) -> Response:
    row = await _pool(request).fetchrow(GET_ONE, request.path_params["id"], _caller(request))
    return _not_found() if row is None else _payment_response(row)


async def list_payments(request: Request) -> Response:
    params = request.query_params
    user_id = _caller(request)
    size = min(max(int(params.get("size", "20")), 1), 100)
    status = params.get("payment_status")
    keyset = "created_at" in params and "id" in params
    page_sql, count_sql = LIST_SQL[(status is not None, keyset)]
    filters: list[object] = [user_id] if status is None else [user_id, status]
    page: int | None = None
    total: int | None = None
    async with _pool(request).acquire() as connection:
        if keyset:
            after = (datetime.fromisoformat(params["created_at"]), int(params["id"]))
            rows = await connection.fetch(page_sql, *filters, *after, size + 1)
        else:
            page = max(int(params.get("page", "1")), 1)
            rows = await connection.fetch(page_sql, *filters, size + 1, (page - 1) * size)
            total = await connection.fetchval(count_sql, *filters)
    has_more = len(rows) > size
    rows = rows[:size]
    next_cursor = f"{rows[-1]['created_at'].isoformat()},{rows[-1]['id']}" if has_more and rows else None
    return _json_response(
        {
            "items": [dict(row) for row in rows],
            "total": total,
            "page": page,
            "size": size,
            "pages": -(-total // size) if total is not None else None,
            "next_cursor": next_cursor,
        }
    )


async def create_payment(request: Request) -> Response:
    body = loads(await request.body())
    user_id = _caller(request)
    values = [body.get(column) for column in INSERTED_COLUMNS[:-1]]
    values[INSERTED_COLUMNS.index("payment_status")] = body.get("payment_status") or "pending"
    values[INSERTED_COLUMNS.index("payment_method_types")] = body.get("payment_method_types") or []
    values[INSERTED_COLUMNS.index("metadata")] = body.get("metadata") or {}
    values[INSERTED_COLUMNS.index("amount_total")] = Decimal(str(body["amount_total"]))
    row = await _pool(request).fetchrow(CREATE, *values, user_id, f"user:{user_id}")
    if row is None:
        return _json_response({"detail": "A payment with this payment_id or checkout_session_id already exists"}, 409)
    return _payment_response(row, 201)


async def change_status(request: Request) -> Response:
    body = loads(await request.body())
    user_id = _caller(request)
    row = await _pool(request).fetchrow(
        CHANGE_STATUS, body["payment_status"], request.path_params["id"], user_id, f"user:{user_id}"
    )
    return _not_found() if row is None else _payment_response(row)


async def create_refund(request: Request) -> Response:
    body = loads(await request.body())
    user_id = _caller(request)
    amount = Decimal(str(body["amount"]))
    if (
        body.get("status", "pending") != "pending"
        or not amount.is_finite()
        or amount <= 0
        or amount != round(amount, 4)
    ):
        return _json_response({"detail": "a positive amount (4 decimals at most) of a pending refund"}, 422)
    payment = request.path_params["id"]
    pool = _pool(request)
    row = await pool.fetchrow(
        REFUND, payment, amount, body.get("reason"), body.get("metadata") or {}, f"user:{user_id}"
    )
    if row is not None:
        return _json_response(dict(row), 201, headers={"ETag": f'"{row["version"]}"'})
    refused = await pool.fetchrow(REFUND_REFUSED, payment)
    if refused is None:
        return _not_found()
    if refused["status"] != "succeeded":
        return _json_response(
            {"detail": f"Only a succeeded payment can be refunded; this one is {refused['status']}"}, 409
        )
    return _json_response({"detail": f"exceeds what is still refundable ({refused['refundable']})"}, 409)


def _encode_jsonb(value: object) -> str:
    return dumps(value).decode()


async def _init_connection(connection: Any) -> None:
    # The service (SQLAlchemy's asyncpg dialect) decodes jsonb too; do the same work here.
    await connection.set_type_codec("jsonb", encoder=_encode_jsonb, decoder=loads, schema="pg_catalog")


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    url = os.environ["BASELINE_DATABASE_URL"]
    size = int(os.environ.get("BASELINE_POOL_SIZE", str(DEFAULT_POOL_SIZE)))
    app.state.pool = await asyncpg.create_pool(_asyncpg_dsn(url), min_size=size, max_size=size, init=_init_connection)
    try:
        yield
    finally:
        await app.state.pool.close()


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/api/v1/payments/", list_payments, methods=["GET"]),
        Route("/api/v1/payments/", create_payment, methods=["POST"]),
        Route("/api/v1/payments/{id:int}", get_payment, methods=["GET"]),
        Route("/api/v1/payments/{id:int}/status", change_status, methods=["PATCH"]),
        Route("/api/v1/payments/{id:int}/refunds", create_refund, methods=["POST"]),
    ],
    lifespan=lifespan,
)
