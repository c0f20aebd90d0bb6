"""Hostile text stays text, the console's headers, and the page at phone width."""

import secrets

import httpx
from playwright.sync_api import expect

from tests.conftest import FAKE_MODEL

from .conftest import api, script_upstream, sign_in

# Each would set a global (or open a dialog) if the browser ever parsed it as markup.
PAYLOADS = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '"><svg onload=window.__pwned=3>',
]


def _assert_inert(page) -> None:
    assert page.evaluate("() => window.__pwned") is None
    assert not page.dialogs
    assert page.locator("main img, main script, main svg:not(.chart)").count() == 0


def test_markup_in_an_answer_a_key_name_or_a_collection_stays_text(page, suite):
    script_upstream(suite, {"content": ["Here: ", *PAYLOADS]})
    sign_in(page, suite)
    page.get_by_label("Model").select_option(FAKE_MODEL)
    page.get_by_label("Message").fill(PAYLOADS[0])
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".message.assistant").last
    expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
    _assert_inert(page)
    # The output may be redacted or flagged by policy; whatever arrives is shown as characters.
    assert "<" in answer.locator(".message-text").text_content()

    key_name = PAYLOADS[0] + secrets.token_hex(2)
    with api(suite) as http:
        assert http.post("/admin/keys", json={"name": key_name}).status_code == 201
        collection = "xss" + secrets.token_hex(3)
        # A collection's name cannot hold markup at all; its description can.
        refused = http.post("/collections", json={"name": "<img src=x onerror=window.__pwned=4>"})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "name"
        made = http.post("/collections", json={"name": collection, "description": PAYLOADS[1]})
        assert made.status_code == 201, made.text
        doc = {"id": PAYLOADS[2] + ".txt", "text": PAYLOADS[1] + " the visitor badge is blue"}
        assert http.post(f"/collections/{collection}/documents", json={"documents": [doc]}).status_code == 200
    nav = page.get_by_role("navigation", name="Console")
    nav.get_by_role("link", name="Keys").click()
    expect(page.get_by_role("table", name="API keys")).to_contain_text(key_name)
    _assert_inert(page)

    nav.get_by_role("link", name="Collections").click()
    expect(page.get_by_role("table", name="Collections")).to_contain_text(PAYLOADS[1])
    _assert_inert(page)
    page.get_by_label("Collection").fill(collection)
    page.get_by_label("Search query").fill("visitor badge")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator(".search-results li").first).to_contain_text(PAYLOADS[2] + ".txt")
    _assert_inert(page)

    nav.get_by_role("link", name="Requests").click()
    expect(page.get_by_role("table", name="Requests")).to_be_visible()
    _assert_inert(page)


def test_the_console_and_the_api_send_security_headers(suite):
    page = httpx.get(f"{suite.gateway_url}/console", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    for response in (page, httpx.get(f"{suite.gateway_url}/console/static/app.js", timeout=10)):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
    assert httpx.get(f"{suite.gateway_url}/console/static/../app.py", timeout=10).status_code == 404
    assert httpx.get(f"{suite.gateway_url}/console/static/index.html", timeout=10).status_code == 404

    with api(suite) as http:
        models = http.get("/models")
    assert models.headers["x-content-type-options"] == "nosniff"
    assert models.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in models.headers["content-security-policy"]
    # The key is never accepted from a cookie: a page elsewhere cannot act as a signed-in user.
    cookie = httpx.get(
        f"{suite.gateway_url}/v1/models", cookies={"llmsuite.console.key": suite.api_key}, timeout=10
    )
    assert cookie.status_code == 401


def test_the_console_works_at_phone_width(browser, suite):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.dialogs = []
    try:
        sign_in(page, suite)
        nav = page.get_by_role("navigation", name="Console")
        menu = page.get_by_role("button", name="Menu")
        expect(menu).to_be_visible()
        expect(nav.get_by_role("link", name="Usage")).to_be_hidden()
        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        nav.get_by_role("link", name="Usage").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Usage")
        expect(nav.get_by_role("link", name="Usage")).to_be_hidden()
        # Nothing wider than the screen: tables scroll inside their own box.
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 391
        page.get_by_role("button", name="Menu").click()
        nav.get_by_role("link", name="Playground").click()
        expect(page.get_by_role("button", name="Send")).to_be_visible()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 391
    finally:
        context.close()
