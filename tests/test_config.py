import os
import pathlib
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from app.core.config import Settings, default_to_development


@pytest.mark.parametrize("secret", ["dev-secret-key-change-me-in-production", "short-but-not-default", "", "change-me"])
def test_production_refuses_a_default_or_short_secret(secret: str) -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(environment="production", secret_key=SecretStr(secret), _env_file=None)


def test_production_refuses_an_unset_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None)


def test_production_accepts_a_strong_secret() -> None:
    settings = Settings(environment="production", secret_key=SecretStr("x" * 32), _env_file=None)
    assert settings.secret_key.get_secret_value() == "x" * 32


def test_only_an_explicit_development_environment_allows_the_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    with pytest.raises(ValidationError, match="SECRET_KEY is an example value"):
        Settings(_env_file=None)  # no ENVIRONMENT: the public default secret would sign anyone's admin token
    for environment in ("test", "production"):
        with pytest.raises(ValidationError, match="SECRET_KEY"):
            Settings(environment=environment, _env_file=None)
    assert Settings(environment="development", _env_file=None).environment == "development"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("stripe_webhook_secret", "whsec_CHANGE-ME"),  # deploy/secret.example.yaml
        ("stripe_webhook_secret", "whsec_" + "a" * 40 + ",whsec_changeme"),  # either of a rotation pair
        ("metrics_token", "CHANGE-ME"),  # deploy/secret.example.yaml
        ("secret_key", "change-me"),
    ],
)
def test_the_shipped_example_secrets_are_refused_outside_development(setting: str, value: str) -> None:
    strong: dict[str, Any] = {"secret_key": SecretStr("s" * 40)}
    for environment in ("test", "production"):
        with pytest.raises(ValidationError, match=setting.upper()):
            Settings(environment=environment, _env_file=None, **{**strong, setting: SecretStr(value)})
    development: dict[str, Any] = {setting: SecretStr(value)}
    Settings(environment="development", _env_file=None, **development)


@pytest.mark.parametrize(("setting", "short"), [("stripe_webhook_secret", "whsec_abc"), ("metrics_token", "t0k3n")])
def test_production_refuses_short_secrets(setting: str, short: str) -> None:
    strong: dict[str, Any] = {"secret_key": SecretStr("s" * 40)}
    with pytest.raises(ValidationError, match=f"{setting.upper()} must be at least"):
        Settings(environment="production", _env_file=None, **{**strong, setting: SecretStr(short)})
    Settings(environment="test", _env_file=None, **{**strong, setting: SecretStr(short)})
    long_enough = SecretStr("whsec_" + "Q" * 32 if setting == "stripe_webhook_secret" else "m" * 32)
    Settings(environment="production", _env_file=None, **{**strong, setting: long_enough})


def test_development_commands_default_to_development(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    default_to_development()
    assert os.environ["ENVIRONMENT"] == "development"

    monkeypatch.setenv("ENVIRONMENT", "production")
    default_to_development()
    assert os.environ["ENVIRONMENT"] == "production"

    monkeypatch.delenv("ENVIRONMENT")
    (tmp_path / ".env").write_text("ENVIRONMENT=test\n")
    default_to_development()  # .env decides
    assert "ENVIRONMENT" not in os.environ


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("DB_POOL_SIZE", "5")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u:p@h:5432/d")
    settings = Settings(_env_file=None)
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]
    assert (settings.db_pool_size, settings.db_max_overflow) == (5, 10)
    assert settings.database_url == "postgresql+asyncpg://u:p@h:5432/d"


def test_database_url_must_use_asyncpg() -> None:
    with pytest.raises(ValidationError, match="asyncpg"):
        Settings(database_url="postgresql://u@h/d", _env_file=None)
