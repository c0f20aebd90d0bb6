"""A real Chromium (Debian's, never a downloaded one) driving the console on the suite's gateway."""

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import Suite

# Chromium as a sandboxed CI user can run it: no setuid sandbox, no GPU, and nothing that reaches
# beyond loopback (updates, sync, field trials).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]
# Where the README's screenshots come from (LLMSUITE_CONSOLE_SCREENSHOTS=docs/console make ...).
SCREENSHOTS = os.environ.get("LLMSUITE_CONSOLE_SCREENSHOTS", "")


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


# Per module, not per session: sync Playwright keeps an asyncio loop running in this thread while
# it is started, and the async tests after these would find it there.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium binary (make install adds Debian's chromium where it can)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    # Any dialog (alert, confirm) would mean a script ran or a flow needs a click it should not.
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.dialogs = dialogs
    page.errors = errors
    yield page
    context.close()


def api(suite: Suite, key: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=f"{suite.gateway_url}/v1",
        headers={"authorization": f"Bearer {key or suite.api_key}"},
        timeout=60,
    )


def sign_in(page, suite: Suite, key: str | None = None) -> None:
    page.goto(f"{suite.gateway_url}/console")
    page.get_by_label("API key").fill(key or suite.api_key)
    page.get_by_role("button", name="Sign in").click()
    # Who is signed in shows at every width (the navigation folds away on a phone).
    expect(page.locator("#who")).to_contain_text(" · ")


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


def member_key(suite: Suite, name: str = "") -> str:
    with api(suite) as http:
        reply = http.post("/admin/keys", json={"role": "member", "name": name or "member"})
        assert reply.status_code == 201, reply.text
        return reply.json()["key"]


@pytest.fixture(scope="session")
def handbook(suite: Suite) -> str:
    """A collection holding the sample corpus `make run` serves, for answers that cite it."""
    name = "console" + secrets.token_hex(3)
    corpus = Path(__file__).resolve().parents[2] / "tools" / "localsuite" / "sample_corpus"
    docs = [{"id": p.name, "text": p.read_text()} for p in sorted(corpus.iterdir()) if p.is_file()]
    with api(suite) as http:
        assert http.post("/collections", json={"name": name}).status_code == 201
        reply = http.post(f"/collections/{name}/documents", json={"documents": docs})
        assert reply.status_code == 200 and reply.json()["failed"] == 0, reply.text
    return name


def script_upstream(suite: Suite, scenario: dict) -> None:
    httpx.post(f"{suite.upstream_url}/_script", json=scenario, timeout=5).raise_for_status()
