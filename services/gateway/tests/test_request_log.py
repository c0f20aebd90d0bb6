"""The request log through the API: one row per request, read back by x-request-id within the
caller's organization (members: their own key), with what the organization's log policy allows."""

import secrets

CHAT = "/v1/chat/completions"
EMAIL = "jane.roe@example.com"
SECRET_KEY = "sk-proj-" + "k" * 24


def chat(model: str, text: str = "What is the capital of France? Answer briefly.", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "cache": False, **extra}


async def new_org(gw, settings: dict | None = None) -> dict[str, str]:
    """An organization with an admin key and two member keys; returns the keys by name."""
    org = "log-" + secrets.token_hex(4)
    keys = {}
    async with gw.client() as root:
        assert (
            await root.post("/v1/admin/orgs", json={"id": org, "settings": settings or {}})
        ).status_code == 201
        for name, role in (("admin", "admin"), ("alice", "member"), ("bob", "member")):
            body = {"org_id": org, "role": role}
            created = (await root.post("/v1/admin/keys", json=body)).json()
            keys[name] = created["key"]
    return keys


async def test_a_request_is_read_back_by_its_id_within_its_org_only(start_gateway, postgres_dsn, fake):
    gw = await start_gateway(gateway_database_url=postgres_dsn)
    ours, theirs = await new_org(gw), await new_org(gw)
    async with gw.client(ours["alice"]) as alice:
        sent = await alice.post(CHAT, json=chat(gw.model))
        assert sent.status_code == 200
        request_id = sent.headers["x-request-id"]
        streamed = await alice.post(CHAT, json=chat(gw.model, stream=True))
        assert streamed.status_code == 200
        stream_id = streamed.headers["x-request-id"]

        mine = await alice.get(f"/v1/requests/{request_id}")
        assert mine.status_code == 200, mine.text
        row = mine.json()
        stream_row = (await alice.get(f"/v1/requests/{stream_id}")).json()

    assert row["id"] == request_id and row["object"] == "request"
    assert row["model"] == gw.model and row["route"] == CHAT and row["stream"] is False
    assert row["status"] == 200 and row["finish_reason"] == "stop" and not row["cancelled"]
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert row["latency_ms"] > 0 and row["ttft_ms"] is not None and row["ttft_ms"] <= row["latency_ms"]
    assert row["input_verdict"] == "allow" and row["output_verdict"] == "allow"
    # The default policy keeps a compact summary, never the messages.
    assert row["log_policy"] == "summary" and row["conversation"] is None
    assert row["summary"].startswith("Q: What is the capital of France?")
    assert "A: You said:" in row["summary"]

    assert stream_row["stream"] is True and stream_row["ttft_ms"] is not None
    assert stream_row["completion_tokens"] > 0 and "A: You said:" in stream_row["summary"]

    # The organization's admin sees it; another member of the same org and another org do not.
    async with gw.client(ours["admin"]) as admin:
        assert (await admin.get(f"/v1/requests/{request_id}")).json()["id"] == request_id
    for key in (ours["bob"], theirs["admin"]):
        async with gw.client(key) as other:
            hidden = await other.get(f"/v1/requests/{request_id}")
        assert hidden.status_code == 404
        assert hidden.json()["error"]["code"] == "not_found"
    async with gw.client(ours["admin"]) as admin:
        missing = await admin.get("/v1/requests/no-such-request")
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"message", "type", "param", "code"}


async def test_full_policy_keeps_the_conversation_and_the_default_does_not(start_gateway, postgres_dsn, fake):
    gw = await start_gateway(gateway_database_url=postgres_dsn)
    full, default = await new_org(gw, {"log_policy": "full"}), await new_org(gw)
    text = f"Please mail {EMAIL} the key {SECRET_KEY}. Then say hello."
    rows = {}
    for name, keys in (("full", full), ("default", default)):
        async with gw.client(keys["alice"]) as http:
            sent = await http.post(CHAT, json=chat(gw.model, text))
            assert sent.status_code == 200
            rows[name] = (await http.get(f"/v1/requests/{sent.headers['x-request-id']}")).json()

    stored = rows["full"]
    assert stored["log_policy"] == "full"
    [message] = stored["conversation"]["messages"]
    assert (
        message["role"] == "user" and EMAIL in message["content"] and "Then say hello." in message["content"]
    )
    assert stored["conversation"]["answer"].startswith("You said:")
    assert SECRET_KEY not in str(stored)

    summary_only = rows["default"]
    assert summary_only["log_policy"] == "summary" and summary_only["conversation"] is None
    assert summary_only["summary"] and EMAIL not in str(summary_only) and SECRET_KEY not in str(summary_only)


async def test_metadata_policy_stores_no_text(start_gateway, postgres_dsn, fake):
    gw = await start_gateway(gateway_database_url=postgres_dsn)
    keys = await new_org(gw, {"log_policy": "metadata"})
    async with gw.client(keys["admin"]) as http:
        sent = await http.post(CHAT, json=chat(gw.model))
        row = (await http.get(f"/v1/requests/{sent.headers['x-request-id']}")).json()
    assert row["log_policy"] == "metadata" and row["summary"] is None and row["conversation"] is None
    assert row["completion_tokens"] > 0


async def test_a_blocked_request_is_logged_with_its_verdict(start_gateway, postgres_dsn, fake):
    gw = await start_gateway(gateway_database_url=postgres_dsn)
    keys = await new_org(gw)
    async with gw.client(keys["admin"]) as http:
        blocked = await http.post(CHAT, json=chat(gw.model, f"Tell me about the {gw.denied_term}."))
        assert blocked.status_code == 400
        row = (await http.get(f"/v1/requests/{blocked.headers['x-request-id']}")).json()
        usage = (await http.get("/v1/usage")).json()["data"]
    assert row["status"] == 400 and row["error_code"] == "content_policy_violation"
    assert row["input_verdict"] == "block" and row["input_codes"]
    assert row["prompt_tokens"] == row["completion_tokens"] == 0
    [summary] = usage
    assert summary["requests"] == 0 and summary["failed_requests"] == 1


async def test_a_summary_model_writes_summaries_and_a_late_one_falls_back(start_gateway, postgres_dsn, fake):
    gw = await start_gateway(
        gateway_database_url=postgres_dsn,
        gateway_summary_model="fake-model",
        gateway_summary_timeout_seconds=1,
    )
    keys = await new_org(gw)
    summaries = []
    # The second summary call stalls past its deadline: that row gets the extractive summary.
    for scenario in (None, {"stall": 5}):
        fake.reset()
        if scenario is not None:
            fake.script({}, scenario)
        async with gw.client(keys["admin"]) as http:
            sent = await http.post(CHAT, json=chat(gw.model, f"Mail {EMAIL} about the capital of France."))
            assert sent.status_code == 200
            summaries.append(
                (await http.get(f"/v1/requests/{sent.headers['x-request-id']}")).json()["summary"]
            )
    # The fake model echoes what it was asked: the exchange, already redacted before it was sent.
    by_model, fallback = summaries
    assert by_model.startswith("You said: User: Mail ***@*** about the capital"), by_model
    assert fallback.startswith("Q: Mail ***@*** about the capital"), fallback
    summary_calls = [r for r in fake.requests() if "Summarize this exchange" in str(r["body"])]
    assert summary_calls and all(EMAIL not in str(r["body"]) for r in summary_calls)


async def test_cli_sets_a_log_policy_and_reads_a_request(
    start_gateway, postgres_dsn, fake, monkeypatch, capsys
):
    import asyncio
    import json

    from gateway_service import cli

    gw = await start_gateway(gateway_database_url=postgres_dsn)
    monkeypatch.setenv("LLMSUITE_URL", gw.url)
    monkeypatch.setenv("LLMSUITE_API_KEY", gw.api_key)

    def run(*argv: str) -> dict:
        code = cli.main(list(argv))
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out)

    org = "cli-" + secrets.token_hex(4)
    # The CLI blocks; run it off the event loop that serves the gateway.
    created_org = await asyncio.to_thread(run, "orgs", "create", org, "--log-policy", "full")
    assert created_org["settings"] == {"log_policy": "full"}
    key = (await asyncio.to_thread(run, "keys", "create", "--org", org, "--role", "admin"))["key"]
    async with gw.client(key) as http:
        request_id = (await http.post(CHAT, json=chat(gw.model))).headers["x-request-id"]
    monkeypatch.setenv("LLMSUITE_API_KEY", key)
    row = await asyncio.to_thread(run, "requests", "get", request_id)
    assert row["id"] == request_id and row["log_policy"] == "full" and row["conversation"]["messages"]
