"""The request log, usage and collections pages against what the API recorded, in a real browser."""

import secrets

from playwright.sync_api import expect

from tests.conftest import FAKE_MODEL

from .conftest import api, screenshot, sign_in


def _chat(suite, text: str = "hello there") -> str:
    with api(suite) as http:
        reply = http.post(
            "/chat/completions",
            json={"model": FAKE_MODEL, "messages": [{"role": "user", "content": text}]},
        )
    assert reply.status_code == 200, reply.text
    return reply.headers["x-request-id"]


def test_a_request_is_in_the_log_and_its_detail_opens(page, suite):
    request_id = _chat(suite, "which request is this")
    sign_in(page, suite)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Requests").click()
    page.get_by_label("Model").fill(FAKE_MODEL)
    page.get_by_label("Status").select_option("2xx")
    page.get_by_role("button", name="Search").click()
    log = page.get_by_role("table", name="Requests")
    link = log.get_by_role("link", name=request_id)
    expect(link).to_be_visible()
    screenshot(page, "requests")
    link.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(request_id)
    expect(page.locator('[data-field="model"]')).to_have_text(FAKE_MODEL)
    expect(page.locator('[data-field="status"]')).to_have_text("200")
    assert float(page.locator('[data-field="latency_ms"]').text_content()) > 0

    # Filters narrow: no 5xx request of this model was made.
    page.go_back()
    page.get_by_label("Status").select_option("5xx")
    page.get_by_role("button", name="Search").click()
    expect(log.get_by_role("link", name=request_id)).to_have_count(0)
    expect(log).to_contain_text("No requests match")


def test_usage_totals_grow_with_requests(page, suite):
    sign_in(page, suite)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Usage").click()
    requests = page.locator('figure[data-metric="requests"]')
    expect(requests).to_be_visible()
    before = float(requests.get_attribute("data-total"))
    for n in range(3):
        _chat(suite, f"usage question {n}")
    page.get_by_role("button", name="Show").click()
    expect(requests).not_to_have_attribute("data-total", str(int(before)))
    assert float(requests.get_attribute("data-total")) >= before + 3
    assert float(page.locator('figure[data-metric="tokens"]').get_attribute("data-total")) > 0
    expect(page.get_by_role("table", name="Usage per model")).to_contain_text(FAKE_MODEL)
    screenshot(page, "usage")


def test_a_file_uploads_with_progress_and_is_searchable(page, suite):
    name = "upload" + secrets.token_hex(3)
    sign_in(page, suite)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Collections").click()
    page.get_by_label("Collection").fill(name)
    text = "The rooftop garden opens at seven. Bees live in two hives by the east wall.\n" * 40
    page.get_by_label("File").set_input_files(
        files=[{"name": "garden.txt", "mimeType": "text/plain", "buffer": text.encode()}]
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_contain_text("1 document(s) added")
    assert page.get_by_label("Upload progress").get_attribute("value") in ("100", "100.0")
    row = page.get_by_role("table", name="Collections").locator("tr", has_text=name)
    expect(row).to_be_visible()
    assert row.locator("td").nth(2).text_content() == "1"
    page.get_by_label("Search query").fill("where are the bee hives")
    page.get_by_role("button", name="Search", exact=True).click()
    first = page.locator(".search-results li").first
    expect(first).to_contain_text("garden.txt")
    expect(first).to_contain_text("hives")
    screenshot(page, "collections")
