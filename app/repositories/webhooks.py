"""Statements on the provider events received (webhook_events)."""

from typing import cast

from sqlalchemy import Integer, Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert

from app.core.database import Statement, UnitOfWork, one
from app.models import WebhookEvent, WebhookOutcome
from app.schemas.webhook import WebhookEventRecord

_events = cast(Table, WebhookEvent.__table__)
_THIS_EVENT = (_events.c.provider == bindparam("event_provider")) & (_events.c.event_id == bindparam("provider_event"))
_NEWEST_FIRST = (_events.c.received_at.desc(), _events.c.id.desc())

_REGISTER = Statement.of(
    insert(_events)
    .values(
        provider=bindparam("event_provider"),
        event_id=bindparam("provider_event"),
        event_type=bindparam("event_type"),
        outcome=WebhookOutcome.IGNORED,
    )
    .on_conflict_do_nothing(index_elements=[_events.c.provider, _events.c.event_id])
    .returning(*_events.columns)
)
_COUNT_REDELIVERY = Statement.of(
    update(_events)
    .where(_THIS_EVENT)
    .values(delivery_count=_events.c.delivery_count + 1, last_received_at=func.now())
    .returning(*_events.columns)
)
_SET_OUTCOME = Statement.of(
    update(_events)
    .where(_events.c.id == bindparam("row_id"))
    .values(
        outcome=bindparam("outcome", type_=_events.c.outcome.type),
        payment_id=bindparam("payment_id", type_=_events.c.payment_id.type),
        detail=bindparam("detail", type_=_events.c.detail.type),
    )
)


def _page_statements(by_outcome: bool) -> tuple[Statement, Statement]:
    conditions = [_events.c.outcome == bindparam("outcome", type_=_events.c.outcome.type)] if by_outcome else []
    page = (
        select(*_events.columns)
        .where(*conditions)
        .order_by(*_NEWEST_FIRST)
        .offset(bindparam("offset", type_=Integer))
        .limit(bindparam("limit", type_=Integer))
    )
    count = select(func.count()).select_from(_events).where(*conditions)
    return Statement.of(page), Statement.of(count)


_PAGES = {by_outcome: _page_statements(by_outcome) for by_outcome in (False, True)}


class WebhookEvents:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def register(self, provider: str, event_id: str, event_type: str) -> WebhookEventRecord | None:
        """Record a first delivery; None when the event id is known. A concurrent first delivery of
        the same event (another process) makes this wait for it to commit, then return None."""
        row = await self.uow.fetchrow(
            _REGISTER, event_provider=provider, provider_event=event_id, event_type=event_type
        )
        return None if row is None else WebhookEventRecord.model_validate(dict(row))

    async def count_redelivery(self, provider: str, event_id: str) -> WebhookEventRecord:
        row = await self.uow.fetchrow(_COUNT_REDELIVERY, event_provider=provider, provider_event=event_id)
        return WebhookEventRecord.model_validate(dict(one(row)))  # registered by an earlier, committed delivery

    async def set_outcome(
        self, event: WebhookEventRecord, outcome: WebhookOutcome, *, payment_id: int | None, detail: str | None
    ) -> None:
        await self.uow.execute(
            _SET_OUTCOME,
            row_id=event.id,
            outcome=outcome,
            payment_id=payment_id,
            detail=detail[:500] if detail else None,
        )

    async def list_page(
        self, *, outcome: WebhookOutcome | None, offset: int, limit: int
    ) -> tuple[list[WebhookEventRecord], int]:
        page, count = _PAGES[outcome is not None]
        values = {"outcome": outcome} if outcome is not None else {}
        rows = await self.uow.fetch(page, **values, offset=offset, limit=limit)
        total = int(await self.uow.fetchval(count, **values))
        return [WebhookEventRecord.model_validate(dict(row)) for row in rows], total
