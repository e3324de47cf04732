"""JWT verification. All token code lives here, so the JWT library could be swapped in one file.

Two modes, chosen by ALGORITHM and never mixed:
- shared secret: HS256/HS384/HS512 with SECRET_KEY (development tokens, service-to-service);
- public key: RS*/PS*/ES* with JWT_PUBLIC_KEY (PEM) or JWKS_URL (Auth0, Keycloak, Cognito...).
An HS algorithm is never accepted in public-key mode, so a public key can never be used as an
HMAC secret (the algorithm-confusion attack; see the README's security section)."""

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from app.core.config import Settings

logger = logging.getLogger(__name__)

_PUBLIC_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
_INTEGER = re.compile(r"-?[0-9]{1,19}")


class KeysUnavailable(Exception):
    """The identity provider's keys could not be fetched and none are cached: the token cannot be
    judged either way (a 503, not a 401, so clients retry instead of discarding a good token)."""


class InvalidToken(Exception):
    """The token is malformed, badly signed, expired, not yet valid, for another issuer or
    audience, or carries no usable user id."""


class CallerKind(StrEnum):
    """Who is calling, from the token's `roles` claim (role names: ADMIN_ROLE, SERVICE_ROLE).

    user: an end user (no role): may create pending payments and read, list and cancel their own.
    service: a trusted backend (booking service, gateway integration): may act on any payment and
    record what a gateway did (processing, succeeded, failed, refunded), but not use admin lists.
    admin: everything, the admin-only lists included."""

    USER = "user"
    SERVICE = "service"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    kind: CallerKind = CallerKind.USER
    # May record what a gateway did (statuses other than canceled, relinking a booking): services
    # and admins, and end users too when TRUST_USER_TOKENS is on.
    records_outcomes: bool = False

    @property
    def is_admin(self) -> bool:
        return self.kind is CallerKind.ADMIN

    @property
    def is_trusted(self) -> bool:
        """A backend or an admin: acts on any payment and may record a gateway's outcome."""
        return self.kind is not CallerKind.USER

    @property
    def actor(self) -> str:
        """How the status history names this caller: user:<id>, service:<id> or admin:<id>."""
        return f"{self.kind.value}:{self.user_id}"


def _user_id_from_claims(claims: dict[str, Any]) -> int:
    raw = claims.get("user_id", claims.get("sub"))
    if isinstance(raw, bool):
        raise InvalidToken("user id must be an integer")
    if isinstance(raw, int):
        user_id = raw
    elif isinstance(raw, str) and _INTEGER.fullmatch(raw):
        user_id = int(raw)
    else:
        raise InvalidToken("token has no integer user_id or sub claim")
    if not -(2**63) <= user_id < 2**63:
        raise InvalidToken("user id out of range")
    return user_id


class JwksKeys:
    """The signing keys published at JWKS_URL: fetched once and cached, refetched when the cache is
    old or a token names an unknown `kid` (at most once per `min_refetch_seconds`, so random kids
    cannot make the service hammer the identity provider). Never fetched per request."""

    def __init__(self, url: str, *, timeout: float, cache_seconds: float, min_refetch_seconds: float) -> None:
        self.url = url
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._last_fetch_failed = False
        self._lock = asyncio.Lock()

    async def get(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        key = self._lookup(kid)
        stale = now - self._fetched_at > self.cache_seconds
        if key is not None and not stale:
            return key
        async with self._lock:  # concurrent misses share one fetch
            if time.monotonic() - self._fetched_at >= self.min_refetch_seconds or stale:
                await self._fetch()
        key = self._lookup(kid)
        if key is None:
            if not self._keys and self._last_fetch_failed:
                raise KeysUnavailable(f"JWKS at {self.url} could not be fetched")
            raise InvalidToken("no key for this token's kid")
        return key

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:  # a token without kid is accepted only when there is one key to choose
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self.url)
                response.raise_for_status()
                key_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            logger.warning("could not fetch JWKS from %s: %s", self.url, type(exc).__name__)
            self._last_fetch_failed = True
            return  # keep the keys we had
        self._last_fetch_failed = False
        # Public signing keys only: an `oct` (shared secret) or encryption key is never used here.
        self._keys = {
            key.key_id or "": key
            for key in key_set.keys
            if key.key_type in _PUBLIC_KEY_TYPES and key.public_key_use in (None, "sig")
        }


class TokenVerifier:
    """Verifies bearer tokens, remembering the ones it has verified until they expire.

    A token's signature and claims cannot change, so a verified token stays valid until its `exp`;
    the cache skips re-verifying it on every request. It is bounded (oldest entries go first) and
    per process; a key change needs a restart, which empties it."""

    def __init__(self, settings: Settings, max_entries: int = 10_000) -> None:
        self.settings = settings
        self.algorithms = settings.jwt_algorithms()
        self.leeway = settings.jwt_leeway_seconds
        self.max_entries = max_entries
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._public_key: Any = None
        self._jwks: JwksKeys | None = None
        if settings.jwt_public_key is not None:
            self._public_key = load_pem_public_key(settings.jwt_public_key.get_secret_value().encode())
        elif settings.jwks_url is not None:
            self._jwks = JwksKeys(
                settings.jwks_url,
                timeout=settings.jwks_timeout_seconds,
                cache_seconds=settings.jwks_cache_seconds,
                min_refetch_seconds=settings.jwks_min_refetch_seconds,
            )

    async def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at = cached
            if time.time() <= expires_at + self.leeway:
                return principal
            del self._verified[token]
            raise InvalidToken("token has expired")
        principal, expires_at = await self._decode(token)
        if len(self._verified) >= self.max_entries:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, expires_at)
        return principal

    async def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm not in self.algorithms:  # `none`, and any algorithm not configured
                raise InvalidToken(f"algorithm {algorithm!r} is not accepted")
            claims = jwt.decode(
                token,
                await self._key(header),
                algorithms=[algorithm],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": self.settings.jwt_audience is not None},
            )
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            # TypeError/ValueError: PyJWT's answer to a key of the wrong type for the token's
            # algorithm (an ES256 token against an RSA key when both families are configured).
            raise InvalidToken(str(exc)) from exc
        kind = self._kind(claims.get("roles"))
        records_outcomes = kind is not CallerKind.USER or self.settings.trust_user_tokens
        return Principal(_user_id_from_claims(claims), kind, records_outcomes), float(claims["exp"])

    def _kind(self, roles: object) -> CallerKind:
        if not isinstance(roles, list):
            return CallerKind.USER
        if self.settings.admin_role in roles:
            return CallerKind.ADMIN
        if self.settings.service_role in roles:
            return CallerKind.SERVICE
        return CallerKind.USER

    async def _key(self, header: dict[str, Any]) -> Any:
        if self._jwks is not None:
            kid = header.get("kid")
            return (await self._jwks.get(kid if isinstance(kid, str) else None)).key
        if self._public_key is not None:
            return self._public_key
        return self.settings.secret_key.get_secret_value()


def create_access_token(
    user_id: int,
    settings: Settings,
    *,
    roles: list[str] | None = None,
    expires_in: timedelta | None = None,
) -> str:
    """A development token signed with SECRET_KEY (shared-secret mode only)."""
    algorithm = settings.jwt_algorithms()[0]
    if not algorithm.startswith("HS"):
        raise ValueError("tokens can only be minted here in shared-secret (HS*) mode; ask your identity provider")
    now = datetime.now(UTC)
    lifetime = expires_in or timedelta(minutes=settings.access_token_expire_minutes)
    claims: dict[str, object] = {
        "sub": str(user_id),
        "user_id": user_id,
        "roles": roles or [],
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=algorithm)
