from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from app.api.problems import problem_responses
from app.api.responses import model_response
from app.dependencies.auth import AdminUser
from app.dependencies.database import UnitOfWorkDep
from app.schemas.event import CloudEvent, EventListQuery, EventPage
from app.services.events import EventService

router = APIRouter(prefix="/api/v1/events", tags=["events"], responses=problem_responses(401, 403, 422, 503))


def _service(request: Request, uow: UnitOfWorkDep) -> EventService:
    return EventService(uow, request.app.state.settings.events_source)


@router.get(
    "",
    response_model=EventPage,
    summary="Events in commit order, after a cursor (admins): catch up after downtime",
)
async def list_events(
    query: Annotated[EventListQuery, Query()], admin: AdminUser, request: Request, uow: UnitOfWorkDep
) -> Response:
    return model_response(await _service(request, uow).list(query))


@router.get("/{event_id}", response_model=CloudEvent, responses=problem_responses(404), summary="One event (admins)")
async def get_event(
    event_id: Annotated[UUID, Path(description="The event's CloudEvents id")],
    admin: AdminUser,
    request: Request,
    uow: UnitOfWorkDep,
) -> Response:
    return model_response(await _service(request, uow).get(event_id))
