from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment

PROBLEM_JSON = "application/problem+json"


async def stored(db: AsyncSession, payment_id: int) -> Payment | None:
    """The payment as it is in the database now (bypassing the session's identity map)."""
    return await db.get(Payment, payment_id, populate_existing=True)


async def payment_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(Payment)) or 0)


def assert_problem(response: httpx.Response, status: int, type_suffix: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    if type_suffix is not None:
        assert body["type"].endswith(type_suffix), body["type"]
    assert "Traceback" not in response.text
    return body


def error_locations(body: dict[str, Any]) -> set[str]:
    return {error["location"] for error in body["errors"]}
