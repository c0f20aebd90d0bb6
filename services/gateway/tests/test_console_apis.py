"""What the web console reads: the caller's own key (/v1/me), the request log filtered and paged
(/v1/requests), and usage per day (/v1/usage?group_by=day)."""

import base64
import secrets
from datetime import UTC, datetime, timedelta

import psycopg
from gateway_service.api.routes import me
from gateway_service.edge.auth import key_id_for
from gateway_service.edge.request_log import INSERT, RequestEntry, row_of

CHAT, EMBEDDINGS = "/v1/chat/completions", "/v1/embeddings"


async def test_me_for_the_configured_key_needs_no_database(start_gateway):
    gw = await start_gateway(gateway_key_rpm=50)
    async with gw.client() as http:
        got = await http.get("/v1/me")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["object"] == "api_key" and body["key_id"] == key_id_for(gw.api_key)
    assert body["key_name"] is None and body["role"] == "admin" and body["superuser"] is True
    assert body["org_id"] == gw.settings.gateway_org_id and body["user_id"] is None
    assert "retrieval:admin" in body["scopes"]
    assert body["limits"]["rpm"] == 50 and body["limits"]["allowed_models"] is None
    assert body["spend_this_month_usd"] == {"key": 0.0, "org": 0.0}
    assert gw.api_key not in got.text and "hash" not in got.text


async def test_me_for_a_stored_member_key(start_gateway, postgres_dsn):
    gw = await start_gateway(gateway_database_url=postgres_dsn)
    org = "me-" + secrets.token_hex(4)
    settings = {"rpm": 7, "max_tokens": 300, "budget_usd": 2.5, "allowed_models": [gw.model]}
    async with gw.client() as root:
        assert (await root.post("/v1/admin/orgs", json={"id": org})).status_code == 201
        created = (
            await root.post(
                "/v1/admin/keys",
                json={
                    "org_id": org,
                    "role": "member",
                    "name": "laptop",
                    "user_id": "jane",
                    "settings": settings,
                },
            )
        ).json()
    async with gw.client(created["key"]) as http:
        got = await http.get("/v1/me")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["key_id"] == created["id"] and body["key_name"] == "laptop"
    assert (body["org_id"], body["role"], body["user_id"]) == (org, "member", "jane")
    assert body["superuser"] is False
    assert body["scopes"] == ["retrieval:read", "retrieval:write"]
    limits = body["limits"]
    assert (limits["rpm"], limits["max_tokens"], limits["budget_usd"]) == (7, 300, 2.5)
    assert limits["allowed_models"] == [gw.model] and limits["tpm"] == 0
    assert body["spend_this_month_usd"] == {"key": 0.0, "org": 0.0}
    secret = created["key"].rsplit("_", 1)[1]
    assert secret not in got.text and "secret" not in got.text and "hash" not in got.text


async def test_me_reports_no_spend_when_the_counters_fail():
    class Broken:
        async def spent(self, scope: str) -> float:
            raise ConnectionError("store down")

    assert await me._spent(Broken(), "key:k") is None


# --- the request log, filtered and paged ---------------------------------------------------------


async def _org_with_keys(gw) -> tuple[str, dict[str, dict]]:
    org = "console-" + secrets.token_hex(4)
    keys = {}
    async with gw.client() as root:
        assert (await root.post("/v1/admin/orgs", json={"id": org})).status_code == 201
        for name, role in (("admin", "admin"), ("alice", "member"), ("bob", "member")):
            keys[name] = (await root.post("/v1/admin/keys", json={"org_id": org, "role": role})).json()
    return org, keys


def _day0() -> datetime:
    """A midnight (UTC) a few days back: every row below falls within the retention and after it."""
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=5)


async def _logged_rows(postgres_dsn: str, org: str, keys: dict[str, dict]) -> dict[str, RequestEntry]:
    """Six rows across three days, stored as the request-log writer stores them; r3 and r4 share a time."""
    d0, hour = _day0(), timedelta(hours=1)
    spec = {
        "r1": (d0 + 10 * hour, "alice", "m-a", 200, "stop", "allow", "allow", CHAT),
        "r2": (d0 + 12 * hour, "alice", "m-b", 429, "", "", "", CHAT),
        "r3": (d0 + 33 * hour, "bob", "m-a", 400, "", "block", "", CHAT),
        "r4": (d0 + 33 * hour, "admin", "m-a", 200, "length", "allow", "redacted:2,flagged:1", CHAT),
        "r5": (d0 + 56 * hour, "alice", "m-b", 502, "", "allow", "", CHAT),
        "r6": (d0 + 68 * hour, "bob", "m-a", 200, "", "", "", EMBEDDINGS),
    }
    entries = {}
    for n, (name, (at, key, model, status, finish, v_in, v_out, route)) in enumerate(spec.items()):
        ok = status < 400
        entries[name] = RequestEntry(
            org,
            keys[key]["id"],
            "",
            model,
            prompt_tokens=10 * (n + 1) if ok else 0,
            completion_tokens=n + 1 if ok else 0,
            cost_usd=0.25 * (n + 1) if ok else 0.0,
            request_id=f"{org}-{name}",
            created_at=at,
            route=route,
            status=status,
            finish_reason=finish,
            input_verdict=v_in,
            output_verdict=v_out,
            citations=({"source_id": "a.md", "chunk_id": "c1", "score": 0.5, "text": "chunk text"},)
            if name == "r1"
            else None,
        )
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as conn:
        async with conn.cursor() as cur:
            await cur.executemany(INSERT, [row_of(e, None) for e in entries.values()])
    return entries


async def _listed(http, **params) -> list[str]:
    got = await http.get("/v1/requests", params={"since": _day0().isoformat(), **params})
    assert got.status_code == 200, got.text
    return [row["id"].rsplit("-", 1)[1] for row in got.json()["data"]]


async def test_requests_filters_each_narrow_the_list(start_gateway, postgres_dsn):
    gw = await start_gateway(gateway_database_url=postgres_dsn)
    org, keys = await _org_with_keys(gw)
    await _logged_rows(postgres_dsn, org, keys)
    day1 = (_day0() + timedelta(days=1)).date()
    async with gw.client(keys["admin"]["key"]) as http:
        assert await _listed(http) == ["r6", "r5", "r4", "r3", "r2", "r1"]
        assert await _listed(http, model="m-b") == ["r5", "r2"]
        assert await _listed(http, status="4xx") == ["r3", "r2"]
        assert await _listed(http, status="error") == ["r5", "r3", "r2"]
        assert await _listed(http, status="429") == ["r2"]
        assert await _listed(http, status="2xx") == ["r6", "r4", "r1"]
        assert await _listed(http, verdict="block") == ["r3"]
        assert await _listed(http, verdict="redact") == ["r4"]
        assert await _listed(http, verdict="flag") == ["r4"]
        assert await _listed(http, verdict="allow") == ["r5", "r4", "r1"]
        assert await _listed(http, verdict="redacted:2,flagged:1") == ["r4"]
        assert await _listed(http, verdict="%") == []
        assert await _listed(http, key_id=keys["bob"]["id"]) == ["r6", "r3"]
        assert await _listed(http, finish_reason="length") == ["r4"]
        assert await _listed(http, route=EMBEDDINGS) == ["r6"]
        # A date means the whole of that day; a time is an exclusive end.
        assert await _listed(http, until=day1.isoformat()) == ["r4", "r3", "r2", "r1"]
        at_nine = datetime.combine(day1, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
        assert await _listed(http, until=at_nine.isoformat()) == ["r2", "r1"]
        assert await _listed(http, status="error", key_id=keys["alice"]["id"]) == ["r5", "r2"]
        cited = (await http.get(f"/v1/requests/{org}-r1")).json()
    # Stored citations keep ids and scores only, never a chunk's text.
    assert cited["citations"] == [{"source_id": "a.md", "chunk_id": "c1", "score": 0.5}]
    # Members see their own key's rows only, whichever key they name.
    async with gw.client(keys["alice"]["key"]) as alice:
        assert await _listed(alice) == ["r5", "r2", "r1"]
        assert await _listed(alice, key_id=keys["bob"]["id"]) == []


async def test_requests_pages_with_a_cursor(start_gateway, postgres_dsn):
    gw = await start_gateway(gateway_database_url=postgres_dsn)
    org, keys = await _org_with_keys(gw)
    await _logged_rows(postgres_dsn, org, keys)
    pages, cursor = [], None
    async with gw.client(keys["admin"]["key"]) as http:
        for _ in range(4):
            params = {"since": _day0().isoformat(), "limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await http.get("/v1/requests", params=params)).json()
            pages.append(([row["id"].rsplit("-", 1)[1] for row in page["data"]], page["has_more"]))
            cursor = page["next_cursor"]
            if not page["has_more"]:
                assert cursor is None
                break
    # r3 and r4 share a time and fall on either side of a page boundary: each comes once.
    assert pages == [(["r6", "r5"], True), (["r4", "r3"], True), (["r2", "r1"], False)]


async def test_bad_cursor_status_and_until_are_400(start_gateway, postgres_dsn):
    gw = await start_gateway(gateway_database_url=postgres_dsn)
    garbage = base64.urlsafe_b64encode(b'{"not": "a list"}').rstrip(b"=").decode()
    no_zone = base64.urlsafe_b64encode(b'["2026-01-01T00:00:00", 3]').rstrip(b"=").decode()
    cases = [
        ({"cursor": "not a cursor!"}, "cursor"),
        ({"cursor": garbage}, "cursor"),
        ({"cursor": no_zone}, "cursor"),
        ({"status": "teapot"}, "status"),
        ({"status": "600"}, "status"),
        ({"status": "4x"}, "status"),
        ({"status": "9" * 5000}, "status"),
        ({"until": "tomorrow"}, "until"),
        ({"until": "2026-01-01\x00"}, "until"),
    ]
    async with gw.client() as http:
        for params, param in cases:
            got = await http.get("/v1/requests", params=params)
            assert got.status_code == 400, (params, got.text)
            assert got.json()["error"]["param"] == param
        # A lone surrogate's bytes (and bytes that are no UTF-8 at all) in the query string.
        for raw in ("%ED%A0%80", "%FF"):
            got = await http.get(f"/v1/requests?since=2026-01-01{raw}")
            assert got.status_code == 400, got.text
        # A NUL in any filter the database would compare: refused by the query-string guard.
        for name in ("key_id", "model", "finish_reason", "verdict", "route", "end_user"):
            got = await http.get("/v1/requests", params={name: "a\x00b"})
            assert got.status_code == 400 and got.json()["error"]["param"] == name, (name, got.text)
        usage = await http.get("/v1/usage", params={"group_by": "week"})
        # The extremes of a date are answered, not a 500: the last day bounds nothing.
        extremes = [
            await http.get(path, params={"since": "0001-01-01", "until": until})
            for path in ("/v1/requests", "/v1/usage")
            for until in ("9999-12-31", "0001-01-01", "9999-12-31T23:59:59-14:00")
        ]
    assert usage.status_code == 400 and usage.json()["error"]["param"] == "group_by"
    assert [r.status_code for r in extremes] == [200] * 6, [r.text for r in extremes]


# --- usage per day ------------------------------------------------------------------------------

_TOTALS = ("requests", "failed_requests", "prompt_tokens", "completion_tokens", "cost_usd")


def _sums(rows: list[dict]) -> dict[str, float]:
    return {k: round(sum(r[k] for r in rows), 8) for k in _TOTALS}


async def test_usage_per_day_adds_up_to_the_totals(start_gateway, postgres_dsn):
    gw = await start_gateway(gateway_database_url=postgres_dsn)
    org, keys = await _org_with_keys(gw)
    entries = await _logged_rows(postgres_dsn, org, keys)
    since = _day0().isoformat()
    async with gw.client(keys["admin"]["key"]) as http:
        flat = (await http.get("/v1/usage", params={"since": since})).json()
        daily = (await http.get("/v1/usage", params={"since": since, "group_by": "day"})).json()
        first_day = (
            await http.get(
                "/v1/usage", params={"since": since, "until": _day0().date().isoformat(), "group_by": "day"}
            )
        ).json()
    # Without group_by the answer is what it was: per key, model and route.
    assert {"org_id", "key_id", "model", "route"} <= set(flat["data"][0]) and "day" not in flat["data"][0]
    assert daily["group_by"] == "day"
    days = [(_day0() + timedelta(days=n)).date().isoformat() for n in range(3)]
    assert {r["day"] for r in daily["data"]} == set(days)
    assert all(set(r) == {"day", "key_id", "model", *_TOTALS} for r in daily["data"])
    assert _sums(daily["data"]) == _sums(flat["data"])
    assert _sums(daily["data"])["requests"] == 3 and _sums(daily["data"])["failed_requests"] == 3
    r4 = entries["r4"]
    [admin_day1] = [r for r in daily["data"] if r["day"] == days[1] and r["key_id"] == keys["admin"]["id"]]
    assert admin_day1 == {
        "day": days[1],
        "key_id": r4.key_id,
        "model": "m-a",
        "requests": 1,
        "failed_requests": 0,
        "prompt_tokens": r4.prompt_tokens,
        "completion_tokens": r4.completion_tokens,
        "cost_usd": r4.cost_usd,
    }
    # `until` as a date: the whole of that day and nothing after.
    assert {r["day"] for r in first_day["data"]} == {days[0]}
    assert _sums(first_day["data"])["requests"] == 1 and _sums(first_day["data"])["failed_requests"] == 1
