from typing import Annotated

from fastapi import Depends, Request

from app.core.database import Database, UnitOfWork


async def get_unit_of_work(request: Request) -> UnitOfWork:
    """The request's unit of work. Nothing to clean up afterwards: it holds a connection only for
    a statement or a transaction() block, both of which end before the endpoint returns."""
    database: Database = request.app.state.database
    return database.unit_of_work(request_id=request.state.request_id)


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work)]
