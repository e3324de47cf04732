"""The test suite. Code of the service that reads its settings from this process's environment
(app.main's module-level app, Alembic's env.py for the migrations) sees a test environment with the
test secret, not the defaults it refuses; set before any test module imports the app."""

import os

TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256"

os.environ.setdefault("ENVIRONMENT", "test")
os.environ.setdefault("SECRET_KEY", TEST_SECRET)
