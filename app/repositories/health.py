"""The readiness check's statement."""

from sqlalchemy import literal, select

from app.core.database import Statement, UnitOfWork

_PING = Statement.of(select(literal(1)))


async def database_answers(uow: UnitOfWork) -> bool:
    return bool(await uow.fetchval(_PING) == 1)
