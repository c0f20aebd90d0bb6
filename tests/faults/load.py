"""A steady mixed load through the gateways, and what it saw, counted per fault.

Workers take turns at the mix: non-streamed chats, streamed chats, chats that retrieve from a
collection, chats over WebSocket, and streams the client cancels after the first chunk. Every
request carries its own `x-request-id`, which the gateway keeps for the request log and which
generation passes on to the upstream: so a request can be followed to its upstream calls (the
fake's records) and to its request-log row.
"""

import asyncio
import itertools
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.faults.harness import COLLECTION, MODEL, Harness, Replica

RESULTS = Path(__file__).resolve().parents[2] / ".run" / "faults"
# Clients at once: a steady 25-35 requests a second here, enough to have requests of every kind in
# flight at any moment without starving the restarts of CPU on two cores.
CONCURRENCY = 4
KINDS = ("chat", "stream", "retrieval", "ws", "cancel", "stream", "chat", "retrieval-stream")
# Codes of answers that end a request before admission: no request-log row is owed for them.
REFUSED_BEFORE_ADMISSION = frozenset(
    {
        "database_busy",
        "database_unavailable",
        "not_ready",
        "limiter_unavailable",
        "overloaded",
        "invalid_api_key",
        "key_rpm",
        "concurrency",
    }
)


@dataclass
class Outcome:
    kind: str
    request_id: str
    gateway: str
    started: float
    ended: float
    # HTTP status (a WebSocket's handshake counts as 200); None when no answer came at all.
    status: int | None
    ok: bool
    # A stream that started and did not end as the protocol says (no [DONE], an error event, a
    # close other than after the usage frame).
    truncated: bool = False
    code: str = ""
    detail: str = ""
    # The Retry-After header of a refusal over HTTP (a WebSocket's error frame has none).
    retry_after: str | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def row_owed(self) -> bool:
        """The gateway admitted it, so the request log must hold its row (cancelled ones too)."""
        return self.status is not None and (self.status == 200 or self.code not in REFUSED_BEFORE_ADMISSION)


def _messages(kind: str, n: int) -> list[dict[str, str]]:
    text = f"{kind} request {n}: when do unused leave days expire?"
    return [{"role": "user", "content": text}]


class Balancer:
    """The gateways as a Kubernetes Service shows them to clients: a gateway leaves shortly after
    its SIGTERM (endpoint removal, while it drains) and rejoins once its /readyz passes. Each
    gateway process gets its own client (a new pod is a new address: no connection carries over)."""

    def __init__(self, gateways: list[Replica]) -> None:
        self._gateways = gateways
        self._in: dict[str, bool] = {g.name: True for g in gateways}
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._turn = itertools.count()

    def pick(self) -> Replica:
        ready = [g for g in self._gateways if self._in[g.name]]
        assert ready, "no gateway in rotation"
        return ready[next(self._turn) % len(ready)]

    def client(self, gateway: Replica) -> httpx.AsyncClient:
        if gateway.name not in self._clients:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            self._clients[gateway.name] = httpx.AsyncClient(
                base_url=gateway.url, timeout=60, limits=limits, trust_env=False
            )
        return self._clients[gateway.name]

    async def leave(self, gateway: Replica) -> None:
        self._in[gateway.name] = False

    async def join(self, gateway: Replica) -> None:
        old = self._clients.pop(gateway.name, None)
        if old is not None:
            await old.aclose()
        self._in[gateway.name] = True

    async def aclose(self) -> None:
        for c in self._clients.values():
            await c.aclose()


@dataclass
class Load:
    harness: Harness
    balancer: Balancer
    key: str
    concurrency: int = CONCURRENCY
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _numbers: itertools.count = field(default_factory=itertools.count)
    _run: str = field(default_factory=lambda: secrets.token_hex(3))

    async def run(self) -> None:
        await asyncio.gather(*(self._worker(i) for i in range(self.concurrency)))

    def stop(self) -> None:
        self._stop.set()

    async def _worker(self, index: int) -> None:
        kinds = itertools.cycle(KINDS[index % len(KINDS) :] + KINDS[: index % len(KINDS)])
        while not self._stop.is_set():
            await self.one(next(kinds))

    async def one(self, kind: str, *, model: str = MODEL) -> Outcome:
        n = next(self._numbers)
        request_id = f"fault-{self._run}-{n}-{kind}"
        gateway = self.balancer.pick()
        started = time.monotonic()
        try:
            if kind == "ws":
                outcome = await self._ws(gateway, request_id, n, model)
            else:
                outcome = await self._http(gateway, kind, request_id, n, model)
        except (httpx.HTTPError, OSError, ConnectionClosed, InvalidStatus) as err:
            outcome = Outcome(kind, request_id, gateway.name, started, 0.0, None, False, detail=repr(err))
        outcome.started, outcome.ended = started, time.monotonic()
        self.outcomes.append(outcome)
        return outcome

    async def _http(self, gateway: Replica, kind: str, request_id: str, n: int, model: str) -> Outcome:
        stream = kind in ("stream", "cancel", "retrieval-stream")
        body: dict[str, Any] = {"model": model, "messages": _messages(kind, n), "stream": stream}
        if kind.startswith("retrieval"):
            body["retrieval"] = {"collection": COLLECTION, "k": 2}
        headers = {"authorization": f"Bearer {self.key}", "x-request-id": request_id}
        client = self.balancer.client(gateway)
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
            if response.status_code != 200:
                raw = await response.aread()
                retry_after = response.headers.get("retry-after")
                return _refused(kind, request_id, gateway, response.status_code, raw, retry_after)
            if kind == "cancel":
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and '"content"' in line:
                        # The client leaves after the first words; the gateway must log it all the same.
                        return Outcome(kind, request_id, gateway.name, 0, 0, 200, True)
                return Outcome(kind, request_id, gateway.name, 0, 0, 200, False, True, detail="no chunk")
            raw = await response.aread()
        if stream:
            complete = raw.rstrip().endswith(b"data: [DONE]") and b'"error"' not in raw
            detail = "" if complete else raw[-300:].decode(errors="replace")
            return Outcome(kind, request_id, gateway.name, 0, 0, 200, complete, not complete, detail=detail)
        content = orjson.loads(raw)["choices"][0]["message"]["content"]
        return Outcome(kind, request_id, gateway.name, 0, 0, 200, bool(content))

    async def _ws(self, gateway: Replica, request_id: str, n: int, model: str) -> Outcome:
        url = gateway.url.replace("http://", "ws://") + "/v1/chat/completions/ws"
        headers = {"authorization": f"Bearer {self.key}", "x-request-id": request_id}
        body = {"model": model, "messages": _messages("ws", n)}
        try:
            socket = await connect(url, additional_headers=headers, open_timeout=30, proxy=None)
        except InvalidStatus as err:
            status = err.response.status_code
            retry_after = err.response.headers.get("retry-after")
            return _refused("ws", request_id, gateway, status, bytes(err.response.body or b""), retry_after)
        async with socket:
            await socket.send(orjson.dumps(body).decode())
            chunks = 0
            try:
                async for frame in socket:
                    message = orjson.loads(frame)
                    if "error" in message:
                        code = str(message["error"].get("code") or "")
                        # An error before the first chunk is a refusal; after it, a broken stream.
                        return Outcome(
                            "ws", request_id, gateway.name, 0, 0, 200, False, chunks > 0, code, str(message)
                        )
                    chunks += 1
                    if message.get("choices") == [] and "usage" in message:
                        return Outcome("ws", request_id, gateway.name, 0, 0, 200, True)
            except ConnectionClosed as err:
                return Outcome("ws", request_id, gateway.name, 0, 0, 200, False, True, detail=repr(err))
        return Outcome("ws", request_id, gateway.name, 0, 0, 200, False, True, detail="closed before usage")


def _refused(
    kind: str, request_id: str, gateway: Replica, status: int, raw: bytes, retry_after: str | None = None
) -> Outcome:
    try:
        code = str(orjson.loads(raw)["error"].get("code") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        code = ""
    detail = raw[:300].decode()
    return Outcome(
        kind, request_id, gateway.name, 0, 0, status, False, code=code, detail=detail, retry_after=retry_after
    )


@dataclass
class Report:
    fault: str
    sent: int
    failed: int
    truncated: int
    cancelled: int
    duplicate_upstream_attempts: int
    rows_owed: int
    rows_lost: int
    recovery_seconds: float | None
    failures: Counter = field(default_factory=Counter)
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        recovery = "-" if self.recovery_seconds is None else f"{self.recovery_seconds:.1f} s"
        lines = [
            f"### {self.fault}",
            "",
            "| requests sent | failed | truncated streams | cancelled by the client | duplicate upstream attempts | request-log rows owed | rows lost | recovery |",
            "|---|---|---|---|---|---|---|---|",
            f"| {self.sent} | {self.failed} | {self.truncated} | {self.cancelled} | "
            f"{self.duplicate_upstream_attempts} | {self.rows_owed} | {self.rows_lost} | {recovery} |",
            "",
            "by kind (sent / failed): "
            + ", ".join(f"{k} {s}/{f}" for k, (s, f) in sorted(self.by_kind.items())),
        ]
        if self.failures:
            lines.append("failures: " + ", ".join(f"{k} x{v}" for k, v in self.failures.most_common()))
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)


async def wait_for_rows(harness: Harness, request_ids: list[str], timeout: float) -> tuple[set[str], float]:
    """The request ids whose request-log row exists, once all of them do or `timeout` passed; and
    how long that took."""
    started = time.monotonic()
    found: set[str] = set()
    while True:
        found = await asyncio.to_thread(harness.request_log_ids, request_ids)
        if len(found) == len(set(request_ids)) or time.monotonic() - started > timeout:
            return found, time.monotonic() - started
        await asyncio.sleep(0.25)


def duplicate_attempts(harness: Harness, request_ids: set[str]) -> int:
    """Upstream calls beyond the first for each request: a request sent twice to the upstream."""
    calls = Counter(
        r["headers"].get("x-request-id")
        for r in harness.fake.requests()
        if r["headers"].get("x-request-id") in request_ids
    )
    return sum(n - 1 for n in calls.values() if n > 1)


async def report(
    harness: Harness,
    fault: str,
    outcomes: list[Outcome],
    *,
    recovery_seconds: float | None,
    rows_timeout: float = 20.0,
    notes: list[str] | None = None,
) -> tuple[Report, set[str]]:
    """Counts `outcomes`: the rows are waited for (up to `rows_timeout`), so a backlog written
    late is not lost; returns the report and the request ids whose rows are missing."""
    owed = [o.request_id for o in outcomes if o.row_owed]
    found, _ = await wait_for_rows(harness, owed, rows_timeout) if owed else (set(), 0.0)
    missing = set(owed) - found
    notes = list(notes or ())
    if missing:
        lost = [o for o in outcomes if o.request_id in missing]
        notes.append("rows missing: " + ", ".join(f"{o.request_id} ({o.status} {o.code})" for o in lost[:8]))
    failed = [o for o in outcomes if not o.ok]
    by_kind: dict[str, tuple[int, int]] = {}
    for kind in sorted({o.kind for o in outcomes}):
        mine = [o for o in outcomes if o.kind == kind]
        by_kind[kind] = (len(mine), sum(not o.ok for o in mine))
    result = Report(
        fault=fault,
        sent=len(outcomes),
        failed=len(failed),
        truncated=sum(o.truncated for o in outcomes),
        cancelled=sum(o.kind == "cancel" and o.ok for o in outcomes),
        duplicate_upstream_attempts=duplicate_attempts(harness, {o.request_id for o in outcomes}),
        rows_owed=len(owed),
        rows_lost=len(missing),
        recovery_seconds=recovery_seconds,
        failures=Counter(f"{o.kind}:{o.status}:{o.code or o.detail[:80]}" for o in failed),
        by_kind=by_kind,
        notes=notes,
    )
    dump_outcomes(fault, outcomes)
    return result, missing


def dump_outcomes(fault: str, outcomes: list[Outcome]) -> None:
    """Every outcome as a JSON line under .run/faults/, times relative to the first request."""
    if not outcomes:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    first = min(o.started for o in outcomes)
    name = "".join(c if c.isalnum() else "-" for c in fault.lower())
    with (RESULTS / f"{name}.jsonl").open("wb") as out:
        for o in sorted(outcomes, key=lambda o: o.started):
            line = {**o.__dict__, "started": round(o.started - first, 3), "ended": round(o.ended - first, 3)}
            out.write(orjson.dumps(line) + b"\n")


async def under_load(
    harness: Harness,
    key: str,
    fault: Callable[[Balancer, Load], Awaitable[Any]],
    *,
    warmup: float = 1.0,
    tail: float = 1.5,
    concurrency: int = CONCURRENCY,
) -> tuple[Load, Any]:
    """Runs the load, and `fault` once it has warmed up; the load goes on for `tail` after the
    fault returns, then stops (requests in flight finish)."""
    balancer = Balancer(harness.gateways)
    load = Load(harness, balancer, key, concurrency=concurrency)
    running = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(warmup)
        result = await fault(balancer, load)
        await asyncio.sleep(tail)
    finally:
        load.stop()
        await running
        await balancer.aclose()
    return load, result
