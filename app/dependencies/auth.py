from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.core.errors import Forbidden, IdentityProviderUnavailable, NotAuthenticated
from app.core.security import InvalidToken, KeysUnavailable, Principal, TokenVerifier

# auto_error=False: a missing header is reported by us as a 401 problem, not by FastAPI as a 403.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A JWT: HS256 with SECRET_KEY (`make token USER=123`), or RS256/ES256 from your identity "
    "provider when JWT_PUBLIC_KEY or JWKS_URL is set.",
)


async def get_current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    if credentials is None:
        raise NotAuthenticated("Missing bearer token")
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        principal = await verifier.verify(credentials.credentials)
    except InvalidToken as exc:
        raise NotAuthenticated("Invalid or expired token") from exc
    except KeysUnavailable as exc:
        raise IdentityProviderUnavailable("The identity provider's keys cannot be fetched; retry shortly") from exc
    request.state.user_id = principal.user_id  # for the request log line
    return principal


CurrentUser = Annotated[Principal, Depends(get_current_principal)]


async def require_admin(principal: CurrentUser) -> Principal:
    if not principal.is_admin:
        raise Forbidden("This endpoint is for admins only")
    return principal


AdminUser = Annotated[Principal, Depends(require_admin)]
