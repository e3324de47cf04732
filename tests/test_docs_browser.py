"""The docs page in a real browser: headless Chromium (Debian's package, driven by Playwright) opens
/docs, authorizes with a development token, runs "Try it out" on the list endpoint and sees the
payment created just before, with no request leaving the service. Saves a screenshot in
test-artifacts/. Skips, saying why, where Chromium or Playwright is not installed (.ci/run installs
both)."""

import importlib.util
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

from app.core.config import Settings
from app.core.security import create_access_token
from tests import databases, require
from tests.conftest import TEST_SECRET
from tests.live import PROJECT_ROOT, uvicorn_servers

if TYPE_CHECKING:
    from playwright.async_api import Request

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = PROJECT_ROOT / "test-artifacts" / "docs-try-it-out.png"
USER_ID = 123
LIST_PATH = "/api/v1/payments/"
TIMEOUT_MS = 20_000


def require_browser() -> None:
    require(
        importlib.util.find_spec("playwright") is not None,
        "Playwright's Python package is not installed: pip install -r requirements-test.txt",
    )
    require(CHROMIUM.exists(), f"Chromium is not installed at {CHROMIUM}: apt-get install chromium (.ci/run does)")


@pytest.fixture(scope="module")
def server(server_url: str) -> Iterator[str]:
    require_browser()
    with databases.migrated_database(server_url, "docs") as url:
        env = {"DATABASE_URL": url, "SECRET_KEY": TEST_SECRET, "ENVIRONMENT": "test"}
        with uvicorn_servers(1, env) as [live]:
            yield live.url


def token_for(user_id: int) -> str:
    return create_access_token(user_id, Settings(secret_key=TEST_SECRET, _env_file=None))


async def test_try_it_out_on_the_list_endpoint_shows_the_new_payment(server: str) -> None:
    from playwright.async_api import async_playwright, expect

    token = token_for(USER_ID)
    created = httpx.post(
        f"{server}{LIST_PATH}",
        json={"payment_id": "pi_docs_browser_1", "provider": "stripe", "currency": "EUR", "amount_total": "42.50"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    payment_id = created.json()["payment_id"]

    requests: list[str] = []
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 1000},
            )
            try:
                page = await context.new_page()

                def record(request: "Request") -> None:
                    requests.append(request.url)

                page.on("request", record)
                page.set_default_timeout(TIMEOUT_MS)
                await page.goto(f"{server}/docs", wait_until="networkidle")
                await expect(page.locator(".swagger-ui .info .title")).to_contain_text("payment-service")

                # Authorize: the HTTP bearer scheme's dialog takes the bare token.
                await page.locator(".auth-wrapper button.authorize").click()
                dialog = page.locator(".modal-ux")
                await dialog.locator("#auth-bearer-value").fill(token)
                await dialog.locator("button.authorize[type=submit]").click()  # "Authorize"
                await expect(dialog.locator("h6")).to_have_text("Authorized")
                await expect(dialog.locator(".auth-btn-wrapper button").first).to_have_text("Logout")
                await dialog.locator("button.btn-done").click()  # "Close"
                await expect(dialog).to_be_hidden()
                await expect(page.locator(".auth-wrapper button.authorize")).to_have_class(re.compile("locked"))

                # Expand GET /api/v1/payments/, then Try it out and Execute.
                operation = page.locator(".opblock-get").filter(
                    has=page.locator(f'.opblock-summary-path[data-path="{LIST_PATH}"]')
                )
                await expect(operation).to_have_count(1)
                await operation.locator(".opblock-summary").click()
                await operation.get_by_role("button", name="Try it out").click()
                await operation.get_by_role("button", name="Execute").click()

                live = operation.locator(".live-responses-table")
                await expect(live.locator(".response .response-col_status")).to_have_text("200")
                body = live.locator(".response .response-col_description pre").first
                await expect(body).to_contain_text(payment_id)
                await expect(operation.locator(".request-url pre")).to_contain_text(f"{server}{LIST_PATH}")
                await expect(operation.locator(".curl-command")).to_contain_text(f"Bearer {token}")

                # The executed request (curl, URL) and its answer (200, body) fill the picture.
                await operation.locator(".responses-wrapper").evaluate("el => el.scrollIntoView({block: 'start'})")
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SCREENSHOT))
            finally:
                await context.close()

    # Swagger UI's script, styles and the schema came from the service itself, and nothing else was asked.
    network = [url for url in requests if urlsplit(url).scheme in ("http", "https", "ws", "wss")]
    assert {urlsplit(url).netloc for url in network} == {urlsplit(server).netloc}, network
    paths = {urlsplit(url).path for url in network}
    assert {"/docs", "/openapi.json", "/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"} <= paths
    assert LIST_PATH in paths
    assert SCREENSHOT.stat().st_size > 10_000
