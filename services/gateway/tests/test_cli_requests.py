"""`requests list` of the CLI: filters become /v1/requests parameters, and --all follows the cursor
to the last page, each request listed once."""

import asyncio
import json
import secrets

from gateway_service import cli

CHAT = "/v1/chat/completions"


def test_each_filter_option_becomes_its_parameter():
    args = cli.parser().parse_args(
        [
            "requests", "list", "--since", "2026-01-01", "--until", "2026-01-31", "--key", "k1",
            "--model", "m", "--status", "5xx", "--finish-reason", "length", "--verdict", "block",
            "--route", "/v1/messages", "--limit", "7", "--cursor", "abc",
        ]
    )  # fmt: skip
    method, path, body, query = cli.request(args)
    assert (method, path, body) == ("GET", "/v1/requests", None)
    assert query == {
        "since": "2026-01-01",
        "until": "2026-01-31",
        "key_id": "k1",
        "model": "m",
        "status": "5xx",
        "finish_reason": "length",
        "verdict": "block",
        "route": "/v1/messages",
        "limit": "7",
        "cursor": "abc",
    }


async def test_all_pages_list_every_request_once(start_gateway, postgres_dsn, fake, monkeypatch, capsys):
    gw = await start_gateway(gateway_database_url=postgres_dsn)
    org = "clipages-" + secrets.token_hex(4)
    async with gw.client() as root:
        assert (await root.post("/v1/admin/orgs", json={"id": org})).status_code == 201
        made = await root.post("/v1/admin/keys", json={"org_id": org, "role": "admin"})
        key = made.json()["key"]
    ids = []
    async with gw.client(key) as http:
        for n in range(5):
            body = {"model": gw.model, "messages": [{"role": "user", "content": f"q{n}"}], "cache": False}
            ids.append((await http.post(CHAT, json=body)).headers["x-request-id"])
    monkeypatch.setenv("LLMSUITE_URL", gw.url)
    monkeypatch.setenv("LLMSUITE_API_KEY", key)

    def run(*argv: str) -> dict:
        code = cli.main(list(argv))
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out)

    # The CLI blocks; run it off the event loop that serves the gateway.
    listed = await asyncio.to_thread(run, "requests", "list", "--limit", "2", "--all")
    assert [r["id"] for r in listed["data"]] == ids[::-1]
    first = await asyncio.to_thread(run, "requests", "list", "--limit", "2")
    assert len(first["data"]) == 2 and first["has_more"] is True
    rest = await asyncio.to_thread(run, "requests", "list", "--limit", "9", "--cursor", first["next_cursor"])
    assert [r["id"] for r in first["data"] + rest["data"]] == ids[::-1]
