from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import PaymentStatus, PaymentStatusHistory


class StatusHistoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(
        self,
        payment_id: int,
        from_status: PaymentStatus | None,
        to_status: PaymentStatus,
        *,
        actor: str,
        request_id: str | None,
        event_id: str | None = None,
    ) -> None:
        await self.session.execute(
            insert(PaymentStatusHistory).values(
                payment_id=payment_id,
                from_status=from_status,
                to_status=to_status,
                actor=actor,
                request_id=request_id,
                event_id=event_id,
            )
        )

    async def for_payment(self, payment_id: int) -> list[PaymentStatusHistory]:
        statement = (
            select(PaymentStatusHistory)
            .where(PaymentStatusHistory.payment_id == payment_id)
            .order_by(PaymentStatusHistory.id)
        )
        return list(await self.session.scalars(statement))
