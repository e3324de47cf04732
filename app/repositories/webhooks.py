from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import WebhookEvent, WebhookOutcome


class WebhookEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def register(self, provider: str, event_id: str, event_type: str) -> WebhookEvent | None:
        """Record a first delivery; None when the event id is known. A concurrent first delivery of
        the same event (another process) makes this wait for it to commit, then return None."""
        statement = (
            insert(WebhookEvent)
            .values(provider=provider, event_id=event_id, event_type=event_type, outcome=WebhookOutcome.IGNORED)
            .on_conflict_do_nothing(index_elements=[WebhookEvent.provider, WebhookEvent.event_id])
            .returning(WebhookEvent)
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def count_redelivery(self, provider: str, event_id: str) -> WebhookEvent:
        statement = (
            update(WebhookEvent)
            .where(WebhookEvent.provider == provider, WebhookEvent.event_id == event_id)
            .values(delivery_count=WebhookEvent.delivery_count + 1, last_received_at=func.now())
            .returning(WebhookEvent)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(statement)).one()

    async def set_outcome(
        self, event: WebhookEvent, outcome: WebhookOutcome, *, payment_id: int | None, detail: str | None
    ) -> None:
        event.outcome = outcome
        event.payment_id = payment_id
        event.detail = detail[:500] if detail else None
        await self.session.flush()

    async def list_page(
        self, *, outcome: WebhookOutcome | None, offset: int, limit: int
    ) -> tuple[list[WebhookEvent], int]:
        conditions = [WebhookEvent.outcome == outcome] if outcome is not None else []
        page = (
            select(WebhookEvent)
            .where(*conditions)
            .order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
            .offset(offset)
            .limit(limit)
        )
        items = list(await self.session.scalars(page))
        total = await self.session.scalar(select(func.count()).select_from(WebhookEvent).where(*conditions))
        return items, total or 0
