"""Signing in, the playground's stream and citations, and API keys, in a real browser."""

import secrets

from playwright.sync_api import expect

from tests.conftest import FAKE_MODEL

from .conftest import api, member_key, screenshot, script_upstream, sign_in


def test_a_wrong_key_is_refused_and_the_right_one_signs_in(page, suite):
    page.goto(f"{suite.gateway_url}/console")
    expect(page.get_by_role("navigation", name="Console")).to_be_hidden()
    page.get_by_label("API key").fill("sk-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not accepted")
    expect(page.get_by_role("navigation", name="Console")).to_be_hidden()
    screenshot(page, "sign-in")

    sign_in(page, suite)
    nav = page.get_by_role("navigation", name="Console")
    for label in ("Playground", "Keys", "Usage", "Requests", "Collections"):
        expect(nav.get_by_role("link", name=label)).to_be_visible()
    expect(page.locator("#who")).to_contain_text("admin")
    # The key is kept for this tab only: a reload stays signed in, a new tab does not.
    page.reload()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    other = page.context.new_page()
    other.goto(f"{suite.gateway_url}/console")
    expect(other.get_by_label("API key")).to_be_visible()
    assert page.evaluate("() => document.cookie") == ""
    assert page.evaluate("() => Object.keys(localStorage).length") == 0
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("() => Object.keys(sessionStorage).length") == 0


def test_the_playground_streams_an_answer_with_its_citations(page, suite, handbook):
    words = ["Dogs ", "are ", "welcome ", "in ", "the ", "office ", "on ", "Fridays."]
    script_upstream(suite, {"content": words, "delay": 0.25})
    sign_in(page, suite)
    page.get_by_label("Model").select_option(FAKE_MODEL)
    page.get_by_label("Use retrieval").check()
    page.get_by_label("Collection").select_option(handbook)
    page.get_by_label("Message").fill("Can I bring my dog to the office?")
    page.get_by_role("button", name="Send").click()

    answer = page.locator(".message.assistant").last
    text = answer.locator(".message-text")
    # Seen while streaming, then longer: the text grows as chunks arrive, not all at the end.
    expect(answer).to_have_attribute("data-state", "streaming")
    expect(text).not_to_have_text("")
    early = text.text_content()
    expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
    final = text.text_content()
    assert final == "".join(words)
    assert early and len(early) < len(final) and final.startswith(early)

    meta = answer.locator(".message-meta")
    assert meta.locator('[data-field="request-id"]').text_content().strip() != "request"
    expect(meta.locator('[data-field="server-timing"]')).to_contain_text("ms")
    expect(meta.locator('[data-field="guardrails"]')).to_contain_text("input=")
    cited = answer.locator(".citations li")
    expect(cited.first).to_be_visible()
    sources = {s.strip() for s in cited.locator(".source").all_text_contents()}
    assert sources <= {"office-pets.md", "support-hours.md", "travel-policy.md"} and sources
    screenshot(page, "playground")
    assert not page.errors, page.errors

    # The request log keeps what the answer cited.
    request_id = meta.locator('[data-field="request-id"]').text_content().removeprefix("request ").strip()
    page.goto(f"{suite.gateway_url}/console#requests/{request_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(request_id)
    # The heading shows at once; the row's fields and citations when the API has answered.
    expect(page.locator(".citations li").first).to_be_visible()
    logged = {s.strip() for s in page.locator(".citations li .source").all_text_contents()}
    assert logged == sources


def test_a_new_key_is_shown_once_works_and_stops_working_when_revoked(page, suite):
    name = "console-" + secrets.token_hex(3)
    sign_in(page, suite)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Keys").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Role").select_option("member")
    page.get_by_label("Requests per minute").fill("120")
    page.get_by_label("Budget (USD)").fill("5")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key-secret").text_content()
    assert secret and secret.startswith("llms_")
    row = page.get_by_role("table", name="API keys").locator("tr", has_text=name)
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("120 rpm")
    screenshot(page, "keys")
    with api(suite, secret) as http:
        assert http.get("/models").status_code == 200

    # Shown once: after a reload the list has the key but its secret is nowhere on the page.
    page.reload()
    expect(page.get_by_role("table", name="API keys")).to_contain_text(name)
    assert page.locator("#new-key-secret").count() == 0
    assert secret not in page.content()

    page.get_by_role("button", name=f"Revoke {name}").click()
    expect(page.get_by_role("table", name="API keys").locator("tr", has_text=name)).to_contain_text("revoked")
    with api(suite, secret) as http:
        assert http.get("/models").status_code == 401


def test_a_member_key_has_no_keys_page(page, suite):
    sign_in(page, suite, member_key(suite, "console member"))
    nav = page.get_by_role("navigation", name="Console")
    expect(nav.get_by_role("link", name="Playground")).to_be_visible()
    expect(nav.get_by_role("link", name="Keys")).to_have_count(0)
    expect(page.locator("#who")).to_contain_text("member")
    page.goto(f"{suite.gateway_url}/console#keys")
    expect(page.get_by_role("alert")).to_contain_text("Only admin keys can manage keys")
    assert page.get_by_role("button", name="Create key").count() == 0
    # The API says the same to a member who tries anyway.
    with api(suite, member_key(suite)) as http:
        assert http.get("/admin/keys").status_code == 403
