import pytest
from pydantic import SecretStr, ValidationError

from app.core.config import Settings


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


def test_development_allows_the_default_secret() -> None:
    assert Settings(_env_file=None).environment == "development"


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
