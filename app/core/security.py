"""JWT handling. All token code lives here so the JWT library can be swapped by editing one file."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jose import JWTError, jwt

from app.core.config import Settings

ADMIN_ROLE = "admin"


class InvalidToken(Exception):
    """The token is malformed, badly signed, expired or carries no usable user id."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    is_admin: bool

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"


def _user_id_from_claims(claims: dict[str, object]) -> int:
    raw = claims.get("user_id", claims.get("sub"))
    if isinstance(raw, bool):
        raise InvalidToken("user id must be an integer")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.isascii() and raw.lstrip("-").isdigit():
        return int(raw)
    raise InvalidToken("token has no integer user_id or sub claim")


def decode_access_token(token: str, settings: Settings) -> Principal:
    try:
        claims = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[settings.algorithm],
            options={"require_exp": True, "verify_aud": False},
        )
    except JWTError as exc:
        raise InvalidToken(str(exc)) from exc
    user_id = _user_id_from_claims(claims)
    if not -(2**63) <= user_id < 2**63:
        raise InvalidToken("user id out of range")
    roles = claims.get("roles")
    is_admin = isinstance(roles, list) and ADMIN_ROLE in roles
    return Principal(user_id=user_id, is_admin=is_admin)


def create_access_token(
    user_id: int,
    settings: Settings,
    *,
    roles: list[str] | None = None,
    expires_in: timedelta | None = None,
) -> str:
    now = datetime.now(UTC)
    lifetime = expires_in if expires_in is not None else timedelta(minutes=settings.access_token_expire_minutes)
    claims: dict[str, object] = {
        "sub": str(user_id),
        "user_id": user_id,
        "roles": roles or [],
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return str(jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=settings.algorithm))
