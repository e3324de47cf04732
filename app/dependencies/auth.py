from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from app.core.errors import Forbidden, IdentityProviderUnavailable, NotAuthenticated
from app.core.security import InvalidToken, KeysUnavailable, Principal, TokenVerifier


class BearerPrincipal(HTTPBearer):
    """The caller, from a verified Bearer JWT. One dependency that is also the OpenAPI security
    scheme (FastAPI's HTTPBearer plus a separate check would be two, and every dependency costs time
    on each request). A missing header is our 401 problem, not FastAPI's 403."""

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
        if not token or scheme.lower() != "bearer":
            raise NotAuthenticated("Missing bearer token")
        verifier: TokenVerifier = request.app.state.token_verifier
        try:
            principal = await verifier.verify(token)
        except InvalidToken as exc:
            raise NotAuthenticated("Invalid or expired token") from exc
        except KeysUnavailable as exc:
            raise IdentityProviderUnavailable("The identity provider's keys cannot be fetched; retry shortly") from exc
        request.state.user_id = principal.user_id  # for the request log line
        return principal


get_current_principal = BearerPrincipal(
    scheme_name="HTTPBearer",
    description="A JWT: HS256 with SECRET_KEY (`make token USER=123`), or RS256/ES256 from your identity "
    "provider when JWT_PUBLIC_KEY or JWKS_URL is set.",
)

CurrentUser = Annotated[Principal, Depends(get_current_principal)]


async def require_admin(principal: CurrentUser) -> Principal:
    if not principal.is_admin:
        raise Forbidden("This endpoint is for admins only")
    return principal


AdminUser = Annotated[Principal, Depends(require_admin)]


async def writing_user(request: Request, principal: CurrentUser) -> Principal:
    """The caller of a write, counted against their per-user write limit (429 beyond it)."""
    request.app.state.user_write_limit.take(principal)
    return principal


# For routes that create or change payments.
WritingUser = Annotated[Principal, Depends(writing_user)]
