"""RFC 9457 problem+json responses: one place turns every error into the same shape."""

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.database import is_database_unavailable
from app.core.errors import PROBLEM_TYPE_BASE, DatabaseUnavailable, DomainError

PROBLEM_MEDIA_TYPE = "application/problem+json"

logger = logging.getLogger(__name__)


class FieldError(BaseModel):
    location: str
    message: str
    type: str


class Problem(BaseModel):
    # Extension members (RFC 9457 §3.2) some problems carry, e.g. amount_refundable.
    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def problem_response(
    status: int,
    type_: str,
    title: str,
    detail: str,
    *,
    errors: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, str] | None = None,
) -> JSONResponse:
    problem = Problem(type=type_, title=title, status=status, detail=detail, errors=errors, **(extensions or {}))
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _location(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc)


def render_domain_error(error: DomainError) -> JSONResponse:
    errors = [FieldError(location=where, message=what, type=kind) for where, what, kind in error.field_errors()]
    return problem_response(
        error.status_code,
        error.problem_type(),
        error.title,
        error.detail,
        errors=errors or None,
        headers=error.headers(),
        extensions=error.extensions(),
    )


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    return render_domain_error(cast(DomainError, exc))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    errors = [
        FieldError(location=_location(error["loc"]), message=error["msg"], type=error["type"])
        for error in cast(RequestValidationError, exc).errors()
    ]
    return problem_response(
        422,
        PROBLEM_TYPE_BASE + "validation-error",
        "Validation error",
        "The request is not valid; see errors for each field.",
        errors=errors,
    )


# FastAPI's own 400 for a body it cannot decode (e.g. not UTF-8); reported as the 422 that any
# other body that is not JSON gets, so clients see one status for "this body is not valid JSON".
_UNPARSABLE_BODY = "There was an error parsing the body"


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    exc = cast(StarletteHTTPException, exc)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        return problem_response(
            422,
            PROBLEM_TYPE_BASE + "validation-error",
            "Validation error",
            "The request is not valid; see errors for each field.",
            errors=[FieldError(location="body", message="The body is not valid JSON", type="json_invalid")],
        )
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem_response(exc.status_code, "about:blank", title, detail, headers=dict(exc.headers or {}))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """Every error the driver (or a database wait) raises ends here: 503 when the database cannot
    serve now (see is_database_unavailable), else a 500 whose traceback is logged."""
    if not is_database_unavailable(exc):
        logger.error("unexpected database error", exc_info=exc)
        return await _unexpected_error(request, exc)
    logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    return render_domain_error(DatabaseUnavailable("The database is unavailable; retry shortly"))


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    # The exception is re-raised by Starlette after this response is sent, so it is still logged
    # with its traceback; the client never sees it.
    return problem_response(500, "about:blank", "Internal Server Error", "An unexpected error occurred.")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # InternalClientError: asyncpg's protocol in a state a failure left it in (e.g. a connection
    # PostgreSQL's shutdown message reached while it sat in the pool); it subclasses only Exception.
    for database_error in (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
        TimeoutError,
    ):
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the problems a route can answer with."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
