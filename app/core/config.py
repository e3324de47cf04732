"""Typed settings from the environment and `.env` (see `.env.example` for every key)."""

import os
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SERVICE_NAME = "payment-service"
SERVICE_VERSION = "1.0.0"

# Secrets shipped in this repository's examples; production refuses to start with any of them.
KNOWN_DEFAULT_SECRETS = frozenset(
    {
        "",
        "change-me",
        "changeme",
        "secret",
        "dev-secret-key-change-me-in-production",
        "your-secret-key-here-change-in-production-min-32-chars",
    }
)
MIN_PRODUCTION_SECRET_LENGTH = 32
# Words the example secrets use (deploy/secret.example.yaml: whsec_CHANGE-ME, CHANGE-ME).
PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "replace-me", "your-secret", "example")
# Stripe's endpoint secrets are whsec_ and 32 characters; a metrics token is a bearer credential.
MIN_WEBHOOK_SECRET_LENGTH = 30
MIN_METRICS_TOKEN_LENGTH = 24
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Unset is neither: the development defaults (the public SECRET_KEY) are refused until
    # ENVIRONMENT=development says so; `make run` and `make token` set it when nothing else does.
    environment: Literal["development", "test", "production"] | None = None
    database_url: str | None = Field(
        default=None,
        description="postgresql+asyncpg://user:password@host:5432/db (`make run` starts one when unset)",
    )
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    # Fail fast when PostgreSQL is away, stuck or saturated: requests get a 503 instead of hanging.
    db_pool_timeout_seconds: float = Field(default=2.0, gt=0)
    db_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    db_statement_timeout_seconds: float = Field(default=3.0, gt=0)
    # The whole database budget of one request: gate wait, connecting and every statement together.
    db_request_timeout_seconds: float = Field(default=3.0, gt=0)
    # Set when DATABASE_URL points at PgBouncer in transaction mode (no prepared statement reuse).
    db_pgbouncer: bool = False

    secret_key: SecretStr = SecretStr("dev-secret-key-change-me-in-production")
    # Accepted JWT algorithms, comma-separated; all HS* (SECRET_KEY) or all RS*/PS*/ES* (public key).
    algorithm: str = "HS256"
    access_token_expire_minutes: int = Field(default=60, ge=1)
    jwt_public_key: SecretStr | None = Field(default=None, description="PEM public key for RS*/PS*/ES* tokens")
    jwks_url: str | None = Field(default=None, description="JWKS endpoint of the identity provider")
    jwks_timeout_seconds: float = Field(default=2.0, gt=0)
    jwks_cache_seconds: float = Field(default=3600, gt=0)
    jwks_min_refetch_seconds: float = Field(default=30, ge=0)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # Role names in the token's `roles` claim: admins see every payment and the admin lists; services
    # (trusted backends) act on any payment and may record a gateway's outcome.
    admin_role: str = Field(default="admin", min_length=1)
    service_role: str = Field(default="service", min_length=1)
    # Writes (create, change, status, cancel) one end user may make per minute in each process
    # (bursts up to the same number); 0 turns the limit off. Services and admins are not limited.
    user_write_limit_per_minute: int = Field(default=120, ge=0)
    # When every client holding a token is a trusted backend, end-user tokens may also record a
    # gateway's outcome on their own payments (the behaviour before caller kinds existed).
    trust_user_tokens: bool = False

    idempotency_key_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # An in-flight key older than this is presumed abandoned (its process died) and may be retried.
    idempotency_lock_timeout_seconds: int = Field(default=60, ge=1)
    idempotency_purge_interval_seconds: float = Field(default=300, gt=0)

    # Events (the outbox and its relay; docs/events.md).
    events_source: str = Field(default="/payment-service", min_length=1)
    events_retention_days: int = Field(default=30, ge=1)
    # amqp://user:password@host:5672/vhost of RabbitMQ; unset: events are only written and listed.
    events_broker_url: SecretStr | None = None
    events_exchange: str = Field(default="payments", min_length=1)
    # Run the relay inside each API process too (a single-container deployment).
    events_relay_in_process: bool = False
    events_relay_batch_size: int = Field(default=100, ge=1, le=1000)
    events_relay_poll_seconds: float = Field(default=0.2, gt=0)
    # The standalone relay's Prometheus port (0: none).
    events_relay_metrics_port: int = Field(default=9102, ge=0, le=65535)

    # One or more `whsec_...` secrets, comma-separated, so a secret can be rolled without downtime.
    stripe_webhook_secret: SecretStr | None = None
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1)

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # How long a client may take to send its whole body (then 408); no database resource is held
    # while it arrives.
    request_body_timeout_seconds: float = Field(default=10.0, gt=0)

    metrics_enabled: bool = True
    # When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`.
    metrics_token: SecretStr | None = None

    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    def jwt_algorithms(self) -> list[str]:
        return [part.strip() for part in self.algorithm.split(",") if part.strip()]

    @model_validator(mode="after")
    def _one_coherent_jwt_mode(self) -> "Settings":
        algorithms = self.jwt_algorithms()
        unknown = [name for name in algorithms if name not in HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS]
        if not algorithms or unknown:
            raise ValueError(f"ALGORITHM must list algorithms from {sorted(HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS)}")
        public_key_sources = [name for name in ("jwt_public_key", "jwks_url") if getattr(self, name) is not None]
        if all(name in HMAC_ALGORITHMS for name in algorithms):
            if public_key_sources:
                raise ValueError(
                    "HS* algorithms cannot be used with JWT_PUBLIC_KEY or JWKS_URL: a public key must never "
                    "serve as an HMAC secret; set ALGORITHM to RS256, ES256, ... instead"
                )
        elif all(name in PUBLIC_KEY_ALGORITHMS for name in algorithms):
            if len(public_key_sources) != 1:
                raise ValueError("RS*/PS*/ES* algorithms need exactly one of JWT_PUBLIC_KEY or JWKS_URL")
        else:
            raise ValueError("ALGORITHM cannot mix HS* with public-key algorithms")
        return self

    def stripe_webhook_secrets(self) -> list[str]:
        if self.stripe_webhook_secret is None:
            return []
        return [part.strip() for part in self.stripe_webhook_secret.get_secret_value().split(",") if part.strip()]

    @field_validator("metrics_token", "stripe_webhook_secret", "jwt_public_key", "events_broker_url", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _require_asyncpg(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("postgresql+asyncpg://"):
            raise ValueError("DATABASE_URL must start with postgresql+asyncpg://")
        return value

    @model_validator(mode="after")
    def _timeouts_fit_the_request_timeout(self) -> "Settings":
        # Opening a connection is not timed by the request's deadline when no wait came before it.
        if self.db_connect_timeout_seconds > self.db_request_timeout_seconds:
            raise ValueError("DB_CONNECT_TIMEOUT_SECONDS must not exceed DB_REQUEST_TIMEOUT_SECONDS")
        return self

    @model_validator(mode="after")
    def _keys_outlive_requests(self) -> "Settings":
        # A request holds its Idempotency-Key in flight only while its database work runs, which the
        # request timeout bounds; a shorter lock timeout would let a retry take a live request's key.
        if self.idempotency_lock_timeout_seconds <= self.db_request_timeout_seconds:
            raise ValueError("IDEMPOTENCY_LOCK_TIMEOUT_SECONDS must be longer than DB_REQUEST_TIMEOUT_SECONDS")
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_and_weak_secrets(self) -> "Settings":
        """Every secret: no shipped example value outside ENVIRONMENT=development, and in
        production none shorter than it must be; each message names its setting."""
        production = self.environment == "production"
        secrets: list[tuple[str, str, int]] = []  # (setting, value, minimum length in production)
        if all(name in HMAC_ALGORITHMS for name in self.jwt_algorithms()):
            secrets.append(("SECRET_KEY", self.secret_key.get_secret_value(), MIN_PRODUCTION_SECRET_LENGTH))
        secrets += [
            ("STRIPE_WEBHOOK_SECRET", part, MIN_WEBHOOK_SECRET_LENGTH) for part in self.stripe_webhook_secrets()
        ]
        if self.metrics_token is not None:
            secrets.append(("METRICS_TOKEN", self.metrics_token.get_secret_value(), MIN_METRICS_TOKEN_LENGTH))
        broker_password = (
            urlsplit(self.events_broker_url.get_secret_value()).password if self.events_broker_url else None
        )
        if broker_password:
            secrets.append(("EVENTS_BROKER_URL", broker_password, 0))
        for setting, value, minimum in secrets:
            if self.environment != "development" and _is_placeholder(value):
                raise ValueError(
                    f"{setting} is an example value from this repository; set a secret of your own "
                    "(only ENVIRONMENT=development accepts the examples)"
                )
            if production and len(value) < minimum:
                raise ValueError(f"{setting} must be at least {minimum} characters when ENVIRONMENT=production")
        return self


def _is_placeholder(secret: str) -> bool:
    lowered = secret.strip().lower()
    return lowered in KNOWN_DEFAULT_SECRETS or any(word in lowered for word in PLACEHOLDER_WORDS)


def default_to_development() -> None:
    """For the development commands (make run, make token, the example): ENVIRONMENT=development
    when neither the environment nor `.env` says otherwise."""
    if "ENVIRONMENT" not in os.environ and "ENVIRONMENT" not in dotenv_values(".env"):
        os.environ["ENVIRONMENT"] = "development"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing the environment."""
    return Settings()
