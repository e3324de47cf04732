"""Events as consumers see them: CloudEvents 1.0 envelopes rendered from outbox rows, and the
admins' catch-up list (like Stripe's Events API)."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from app.core.database import UnitOfWork
from app.core.errors import EventNotFound
from app.repositories.events import EventFilters, Events
from app.schemas.event import CloudEvent, EventData, EventListQuery, EventPage
from app.schemas.payment import PaymentRecord
from app.schemas.refund import RefundRecord


def render(row: dict[str, Any], source: str) -> CloudEvent:
    """The envelope of an outbox row. The snapshot is the row of the payment (or refund) as written,
    rendered by the API's own response model, so `data.object` is what the API returned then."""
    snapshot = json.loads(row["snapshot"], parse_float=Decimal)
    # row_to_json writes times in the session's time zone; the API (asyncpg) returns them in UTC.
    for name in ("created_at", "updated_at"):
        snapshot[name] = datetime.fromisoformat(snapshot[name]).astimezone(UTC)
    record = RefundRecord if row["refund_id"] is not None else PaymentRecord
    rendered = record.model_validate(snapshot)
    return CloudEvent(
        id=str(row["event_id"]),
        source=source,
        type=row["type"],
        subject=f"payments/{row['payment_id']}",
        time=row["created_at"],
        position=row["position"],
        data=EventData(
            object=rendered.model_dump(mode="json"),
            previous_status=row["previous_status"],
            actor=row["actor"],
            request_id=row["request_id"],
            detail=row["detail"],
        ),
    )


def encode(event: CloudEvent) -> bytes:
    return event.__pydantic_serializer__.to_json(event, exclude_none=False)


class EventService:
    def __init__(self, uow: UnitOfWork, source: str) -> None:
        self.events = Events(uow)
        self.source = source

    async def list(self, query: EventListQuery) -> EventPage:
        """Events in commit order after the cursor. Events committed since the last call are given
        their positions first, so a consumer polling with its last cursor misses none."""
        await self.events.position_new()
        filters = EventFilters(
            type=query.type,
            payment_id=query.payment_id,
            created_from=query.created_from,
            created_to=query.created_to,
        )
        rows = await self.events.page(filters, after=query.cursor, limit=query.size)
        items = [render(row, self.source) for row in rows]
        last = items[-1].position if items else query.cursor
        return EventPage(items=items, next_cursor=last)

    async def get(self, event_id: UUID) -> CloudEvent:
        row = await self.events.get(event_id)
        if row is None:
            raise EventNotFound("Event not found")
        return render(row, self.source)
