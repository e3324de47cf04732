"""The test suite. Code of the service that reads its settings from this process's environment
(app.main's module-level app, Alembic's env.py for the migrations) sees a test environment with the
test secret, not the defaults it refuses; set before any test module imports the app."""

import os

import pytest

TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256"

os.environ.setdefault("ENVIRONMENT", "test")
os.environ.setdefault("SECRET_KEY", TEST_SECRET)


def require(available: bool, missing: str) -> None:
    """For a test that needs a tool outside Python (PgBouncer, Chromium, a broker): skipped on a
    machine without it, but a failure where CI is set, so CI cannot go green without the test."""
    if available:
        return
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{missing}; CI is set, where a missing tool fails the test instead of skipping it")
    pytest.skip(missing)
