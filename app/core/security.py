"""JWT handling. All token code lives here so the JWT library can be swapped by editing one file."""

import time
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


def _decode(token: str, settings: Settings) -> tuple[Principal, float]:
    """Verify `token`; return who it is for and when it expires (epoch seconds)."""
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
    return Principal(user_id=user_id, is_admin=is_admin), float(claims["exp"])


def decode_access_token(token: str, settings: Settings) -> Principal:
    return _decode(token, settings)[0]


class TokenVerifier:
    """Verifies bearer tokens, remembering the ones it has verified until they expire.

    A token's signature and claims cannot change, so a verified token stays valid until its `exp`;
    the cache skips re-verifying it on every request. It is bounded (oldest entries go first) and
    per process; a key change needs a restart, which empties it."""

    def __init__(self, settings: Settings, max_entries: int = 10_000) -> None:
        self.settings = settings
        self.max_entries = max_entries
        self._verified: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        now = time.time()
        if cached is not None:
            principal, expires_at = cached
            if now < expires_at:
                return principal
            del self._verified[token]
            raise InvalidToken("token has expired")
        principal, expires_at = _decode(token, self.settings)
        if len(self._verified) >= self.max_entries:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, expires_at)
        return principal


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
