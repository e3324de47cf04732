"""Unauthenticated routes: service info, health, and the self-hosted API docs."""

import hmac
from importlib.resources import files
from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.problems import problem_responses
from app.core.config import SERVICE_NAME, SERVICE_VERSION
from app.core.errors import Forbidden, NotAuthenticated
from app.core.metrics import REGISTRY
from app.dependencies.database import UnitOfWorkDep
from app.repositories.health import database_answers

# Swagger UI and ReDoc bundles ship inside the fastapi-offline wheel, so /docs works with no CDN.
DOCS_ASSETS_URL = "/docs-assets"
_DOCS_ASSETS_DIR = str(files("fastapi_offline") / "static")

router = APIRouter()


class Health(BaseModel):
    status: Literal["healthy"]
    service: str
    version: str


class ServiceInfo(BaseModel):
    service: str
    version: str
    docs: str
    redoc: str
    openapi: str


@router.get("/", response_model=ServiceInfo, tags=["meta"], summary="Service name, version and doc links")
async def root() -> ServiceInfo:
    return ServiceInfo(
        service=SERVICE_NAME, version=SERVICE_VERSION, docs="/docs", redoc="/redoc", openapi="/openapi.json"
    )


@router.get("/health", response_model=Health, tags=["meta"], summary="Liveness: the process is up")
async def health() -> Health:
    return Health(status="healthy", service=SERVICE_NAME, version=SERVICE_VERSION)


class Readiness(BaseModel):
    status: Literal["ready"]


@router.get(
    "/health/ready",
    response_model=Readiness,
    tags=["meta"],
    summary="Readiness: a request is admitted to the database and it answers (503 problem when not)",
    responses=problem_responses(503),
)
async def ready(uow: UnitOfWorkDep) -> Readiness:
    # Through the same gate as every request: a replica whose connections are all taken for longer
    # than DB_POOL_TIMEOUT_SECONDS is not ready either.
    await database_answers(uow)
    return Readiness(status="ready")


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format. Off with METRICS_ENABLED=false; METRICS_TOKEN makes it need a token,
    and in production it is closed until one is set."""
    settings = request.app.state.settings
    if not settings.metrics_enabled:
        raise StarletteHTTPException(404)
    if settings.metrics_token is None and settings.environment == "production":
        raise Forbidden("GET /metrics is closed in production until METRICS_TOKEN is set")
    if settings.metrics_token is not None:
        expected = f"Bearer {settings.metrics_token.get_secret_value()}".encode()
        if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
            raise NotAuthenticated("GET /metrics needs the METRICS_TOKEN as a bearer token")
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, with their JS and CSS served from this service."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=_DOCS_ASSETS_DIR), name="docs-assets")
    oauth2_redirect_url = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root_path = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root_path}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root_path}{oauth2_redirect_url}",
            swagger_js_url=f"{root_path}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root_path}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root_path}{DOCS_ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root_path = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root_path}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root_path}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root_path}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
