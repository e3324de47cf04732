from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.database import DriverTransaction
from app.core.errors import DomainError


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session and one transaction per request: committed when the endpoint returns, rolled back
    when it raises. Used with scope="function" so the commit happens before the response is sent;
    a failed commit becomes an error response, never a 2xx for data that was not stored."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    # A request's transaction holds one of the pool's connections: wait for it in arrival order.
    async with request.app.state.db_gate, sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_driver_transaction(request: Request) -> AsyncIterator[DriverTransaction]:
    """The create route's transaction, on the driver (see PaymentCreator), kept like get_session's:
    the request passes the gate here, before an Idempotency-Key is claimed (so a key is in flight
    only while its work can run, never while it waits for a connection); the connection is taken
    when the first statement needs it; the transaction commits when the endpoint returns and rolls
    back when it raises, before the response is sent."""
    async with request.app.state.db_gate:
        transaction = DriverTransaction(request.app.state.transaction_driver_connection)
        try:
            yield transaction
            await transaction.commit()
        except BaseException as error:
            # A refusal (a 4xx decided in Python) leaves the connection healthy; anything else may
            # not, and the pool replaces the connection.
            refusal = isinstance(error, DomainError) and error.status_code < 500
            await transaction.close(None if refusal else error)
            raise
        await transaction.close()


DriverTransactionDep = Annotated[DriverTransaction, Depends(get_driver_transaction, scope="function")]


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for requests that only read: autocommit, nothing to commit or roll back."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    async with sessionmaker() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
