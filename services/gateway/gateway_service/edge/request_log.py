"""The request log: one row per chat request in gateway.usage_events, and what of the conversation it keeps.

The request path only captures (cheaply, bounded by the log policy) what a row needs; summaries and
redaction run in the background writer (request_log_writer.py). What is stored per log policy:
- `summary` (default): a compact, redacted summary; no messages.
- `full` (set on the organization): the messages and the answer too, with credentials masked
  (API keys, bearer tokens, upstream keys); e-mail addresses are kept only here.
- `metadata` / `none`: no conversation text at all.
"""

import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from llmsuite_common.redaction import redact
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ..api.errors import ApiError
from ..api.guardrails_summary import GuardrailsSummary, current_summary
from .auth import Identity
from .end_users import end_user_id
from .summaries import MAX_SOURCE_CHARS, clean_summary, extractive_summary, last_user_turn

CHAT_ROUTE = "/v1/chat/completions"
WS_ROUTE = "/v1/chat/completions/ws"


@dataclass(frozen=True)
class RequestEntry:
    """What the request path hands to the writer; conversation text is still raw here."""

    org_id: str
    key_id: str
    user_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    request_id: str
    cancelled: bool = False
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    route: str = CHAT_ROUTE
    stream: bool = False
    status: int = 200
    finish_reason: str = ""
    error_code: str = ""
    latency_ms: float | None = None
    ttft_ms: float | None = None
    input_verdict: str = ""
    input_codes: tuple[str, ...] = ()
    output_verdict: str = ""
    output_codes: tuple[str, ...] = ()
    log_policy: str = "metadata"
    # (role, content) pairs: all of them under `full`, only the last user turn under `summary`.
    messages: tuple[tuple[str, str], ...] = ()
    answer: str = ""
    # The application's user the request named (OpenAI `user`, Anthropic `metadata.user_id`).
    end_user: str = ""
    # What a request with the `retrieval` extension cited ({source_id, chunk_id, score} each, never
    # the chunks' text); None without retrieval.
    citations: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True)
class Outcome:
    """How a request ended and what it took, as the route saw it."""

    route: str = CHAT_ROUTE
    stream: bool = False
    status: int = 200
    finish_reason: str = ""
    error_code: str = ""
    latency_ms: float | None = None
    ttft_ms: float | None = None
    answer: str = ""
    citations: tuple[dict[str, Any], ...] | None = None


def captured_conversation(
    policy: str, messages: Sequence[Any], answer: str
) -> tuple[tuple[tuple[str, str], ...], str]:
    """The text a row may keep under `policy`, taken on the request path: references, or short slices."""
    if policy == "full":
        return tuple((m.role, m.content or "") for m in messages), answer
    if policy == "summary":
        pairs = [(m.role, m.content or "") for m in messages]
        return (("user", last_user_turn(pairs)[:MAX_SOURCE_CHARS]),), answer[:MAX_SOURCE_CHARS]
    return (), ""


def entry_for(
    identity: Identity,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cost_usd: float,
    request_id: str,
    *,
    cancelled: bool,
    outcome: Outcome | None,
    messages: Sequence[Any],
    guardrails: GuardrailsSummary | None,
    end_user: str = "",
) -> RequestEntry:
    outcome = outcome or Outcome()
    policy = identity.policy.log_policy
    texts, answer = captured_conversation(policy, messages, outcome.answer)
    # Rows are timed from when the request arrived, as access logs and traces are.
    started = datetime.now(UTC) - timedelta(milliseconds=outcome.latency_ms or 0)
    parts = guardrails.parts if guardrails is not None else {}
    codes = guardrails.codes if guardrails is not None else {}
    return RequestEntry(
        identity.org_id,
        identity.key_id,
        identity.user_id,
        model,
        prompt_tokens,
        completion_tokens,
        cost_usd,
        request_id,
        cancelled,
        created_at=started,
        route=outcome.route,
        stream=outcome.stream,
        status=outcome.status,
        finish_reason=outcome.finish_reason,
        error_code=outcome.error_code,
        latency_ms=outcome.latency_ms,
        ttft_ms=outcome.ttft_ms,
        input_verdict=parts.get("input", ""),
        input_codes=tuple(codes.get("input", ())),
        output_verdict=parts.get("output", ""),
        output_codes=tuple(codes.get("output", ())),
        log_policy=policy,
        messages=texts,
        answer=answer,
        end_user=end_user,
        citations=outcome.citations,
    )


def logged(
    body: Any,
    deadline: Any,
    *,
    state: Any = None,
    tally: Any = None,
    route: str = CHAT_ROUTE,
) -> dict[str, Any]:
    """The request-log keywords of `UsageRecorder.record` for a finished request.

    `state` is the request's state (ttft_seconds, finish_reason, answer and citations set by the
    chat route); `tally` the StreamTally of a stream. Guardrail verdicts come from the request's summary.
    """
    ttft = getattr(state, "ttft_seconds", None)
    cited = getattr(state, "citations", None)
    if tally is not None:
        finish = tally.final.finish_reason if tally.final is not None else ""
        answer = "".join(tally.parts)
    else:
        finish, answer = getattr(state, "finish_reason", ""), getattr(state, "answer", "")
    outcome = Outcome(
        route=route,
        stream=tally is not None,
        finish_reason=finish,
        latency_ms=round(deadline.elapsed() * 1000, 3),
        ttft_ms=round(ttft * 1000, 3) if ttft is not None else None,
        answer=answer,
        citations=tuple(cited) if cited is not None else None,
    )
    return {**_conversation(body), "outcome": outcome}


def _conversation(body: Any) -> dict[str, Any]:
    """The keywords of a request's row that come from its body: messages, end user, guardrails."""
    end_user = getattr(body, "user", None) or ""
    return {"messages": body.messages, "guardrails": current_summary(), "end_user": end_user}


def failed(body: Any, deadline: Any, error: BaseException, *, route: str = CHAT_ROUTE) -> dict[str, Any]:
    """The request-log keywords for a request that ended in an error response."""
    if isinstance(error, ApiError):
        status, code = error.status, error.code or ""
    else:
        status, code = 500, "internal_error"
    outcome = Outcome(
        route=route,
        stream=bool(getattr(body, "stream", False)),
        status=status,
        error_code=code,
        latency_ms=round(deadline.elapsed() * 1000, 3),
    )
    return {**_conversation(body), "outcome": outcome}


# --- what is stored --------------------------------------------------------------------------------

Summarize = Callable[[RequestEntry], Awaitable[str | None]]


def stored_text(entry: RequestEntry, model_summary: str | None) -> tuple[str | None, dict[str, Any] | None]:
    """(summary, conversation) columns of a row: redacted, per the entry's log policy."""
    if entry.log_policy not in ("full", "summary"):
        return None, None
    question = last_user_turn(entry.messages)
    summary = clean_summary(model_summary or extractive_summary(question, entry.answer))
    if entry.log_policy != "full":
        return summary, None
    conversation = {
        "messages": [
            {"role": role, "content": redact(text, keep_emails=True)} for role, text in entry.messages
        ],
        "answer": redact(entry.answer, keep_emails=True),
    }
    return summary, conversation


COLUMNS = (
    "org_id, key_id, user_id, model, prompt_tokens, completion_tokens, cost_usd, request_id, cancelled, "
    "created_at, route, stream, status, finish_reason, error_code, latency_ms, ttft_ms, input_verdict, "
    "input_codes, output_verdict, output_codes, log_policy, summary, conversation, end_user, citations"
)
_NAMES = [c.strip() for c in COLUMNS.split(",")]
INSERT = f"INSERT INTO gateway.usage_events ({COLUMNS}) VALUES ({', '.join(['%s'] * len(_NAMES))})"
# What a row keeps of each citation: ids and the score, never a chunk's text.
CITATION_FIELDS = ("source_id", "chunk_id", "score")


def stored_citations(citations: Sequence[dict[str, Any]] | None) -> Jsonb | None:
    if citations is None:
        return None
    return Jsonb([{k: c.get(k) for k in CITATION_FIELDS} for c in citations])


def row_of(entry: RequestEntry, model_summary: str | None) -> tuple[Any, ...]:
    summary, conversation = stored_text(entry, model_summary)
    return (
        entry.org_id,
        entry.key_id,
        entry.user_id or None,
        entry.model,
        entry.prompt_tokens,
        entry.completion_tokens,
        entry.cost_usd,
        entry.request_id,
        entry.cancelled,
        entry.created_at,
        entry.route,
        entry.stream,
        entry.status,
        entry.finish_reason or None,
        entry.error_code or None,
        entry.latency_ms,
        entry.ttft_ms,
        entry.input_verdict or None,
        list(entry.input_codes),
        entry.output_verdict or None,
        list(entry.output_codes),
        entry.log_policy,
        summary,
        Jsonb(conversation) if conversation is not None else None,
        # Rows keep the end user's hash, as the limiter and spend counters do: the name is the
        # client's text (often an e-mail address), which no row, log or metric holds.
        end_user_id(entry.end_user) if entry.end_user else None,
        stored_citations(entry.citations),
    )


# --- reading and retention ---------------------------------------------------------------------------

_READ = (
    f"SELECT {COLUMNS} FROM gateway.usage_events WHERE org_id = %s AND request_id = %s "
    "AND (%s::text IS NULL OR key_id = %s) ORDER BY id DESC LIMIT 1"
)


def _record(row: Sequence[Any]) -> dict[str, Any]:
    record = dict(zip(_NAMES, row, strict=True))
    record["created_at"] = record["created_at"].isoformat()
    record["cost_usd"] = round(float(record["cost_usd"]), 8)
    return {"object": "request", "id": record.pop("request_id"), **record}


async def read_request(pool: Any, identity: Identity, request_id: str) -> dict[str, Any]:
    """The caller's row for `request_id`: admins see their organization's, members their key's."""
    only_key = identity.key_id if identity.role != "admin" else None
    async with pool.connection() as conn:
        cur = await conn.execute(_READ, (identity.org_id, request_id, only_key, only_key))
        row = await cur.fetchone()
    if row is None:
        # The same answer whether the id is unknown or another tenant's: nothing to probe.
        raise ApiError(404, f"request '{request_id}' not found", code="not_found", param="request_id")
    return _record(row)


@dataclass(frozen=True)
class RequestQuery:
    """Which logged requests to list, newest first; None leaves a filter out."""

    since: datetime
    end_user: str | None = None
    limit: int = 100
    # Exclusive.
    until: datetime | None = None
    key_id: str | None = None
    model: str | None = None
    # Statuses from status_min up to status_max (exclusive); either may be None.
    status_min: int | None = None
    status_max: int | None = None
    finish_reason: str | None = None
    # The input or the output verdict.
    verdict: str | None = None
    route: str | None = None
    # (created_at, id) of the last row of the previous page (decode_cursor).
    after: tuple[datetime, int] | None = None


@dataclass(frozen=True)
class RequestPage:
    data: list[dict[str, Any]]
    # Where the next page starts (encode_cursor), None on the last page.
    next_cursor: str | None = None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def encode_cursor(created_at: datetime, row_id: int) -> str:
    """base64url (no padding) of `[created_at, id]` of a page's last row."""
    raw = orjson.dumps([created_at.isoformat(), row_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) a cursor names; 400 `cursor` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = orjson.loads(raw)
        at = datetime.fromisoformat(created)
        if at.tzinfo is None or type(row_id) is not int or not 0 < row_id < 2**63:
            raise ValueError(cursor)
    except (ValueError, TypeError):
        raise ApiError(400, "cursor is not one this API returned", param="cursor") from None
    return at, row_id


# What a verdict filter matches in a stored verdict: the output rail writes `redacted:<n>` and
# `allow,flagged:<n>`, the input check `redact`; `allow` means nothing was changed or flagged.
_VERDICT_PATTERNS = {"allow": "allow", "block": "block", "redact": "redact%", "flag": "%flagged%"}


def verdict_pattern(verdict: str | None) -> str | None:
    """A LIKE pattern for a verdict filter: a known kind, or the exact text of any other."""
    if verdict is None:
        return None
    literal = verdict.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return _VERDICT_PATTERNS.get(verdict, literal)


# Fixed text: every filter is a parameter, and a None one matches every row.
_LIST = (
    f"SELECT {COLUMNS}, id FROM gateway.usage_events WHERE org_id = %s AND created_at >= %s "
    "AND (%s::timestamptz IS NULL OR created_at < %s) "
    "AND (%s::text IS NULL OR key_id = %s) AND (%s::text IS NULL OR key_id = %s) "
    "AND (%s::text IS NULL OR end_user = %s) AND (%s::text IS NULL OR model = %s) "
    "AND (%s::int IS NULL OR status >= %s) AND (%s::int IS NULL OR status < %s) "
    "AND (%s::text IS NULL OR finish_reason = %s) "
    "AND (%s::text IS NULL OR input_verdict LIKE %s OR output_verdict LIKE %s) "
    "AND (%s::text IS NULL OR route = %s) "
    "AND (%s::timestamptz IS NULL OR (created_at, id) < (%s::timestamptz, %s::bigint)) "
    "ORDER BY created_at DESC, id DESC LIMIT %s"
)


def _list_params(identity: Identity, query: RequestQuery) -> tuple[Any, ...]:
    # Members see their own key only, whatever key_id they ask for; admins their whole organization.
    only_key = identity.key_id if identity.role != "admin" else None
    end_user = end_user_id(query.end_user) if query.end_user is not None else None
    after_at, after_id = query.after if query.after is not None else (None, None)
    return (
        identity.org_id,
        query.since,
        *(query.until, query.until),
        *(only_key, only_key),
        *(query.key_id, query.key_id),
        *(end_user, end_user),
        *(query.model, query.model),
        *(query.status_min, query.status_min),
        *(query.status_max, query.status_max),
        *(query.finish_reason, query.finish_reason),
        *(query.verdict, *[verdict_pattern(query.verdict)] * 2),
        *(query.route, query.route),
        *(after_at, after_at, after_id),
        # One more than asked for: whether another page follows.
        query.limit + 1,
    )


async def list_requests(pool: Any, identity: Identity, query: RequestQuery) -> RequestPage:
    """The caller's rows matching `query`, a page of `query.limit` (admins: their organization's,
    members: their key's); `end_user` matches the rows naming that end user."""
    async with pool.connection() as conn:
        cur = await conn.execute(_LIST, _list_params(identity, query))
        rows = await cur.fetchall()
    page = rows[: query.limit]
    more = len(rows) > query.limit
    # The last column is the row's own id, which only the cursor uses.
    cursor = encode_cursor(page[-1][_NAMES.index("created_at")], page[-1][-1]) if more else None
    return RequestPage([_record(row[:-1]) for row in page], cursor)


RETENTION_BATCH = 5000
# SKIP LOCKED: replicas deleting at the same time take different rows instead of queueing on locks.
_DELETE_EXPIRED = (
    "DELETE FROM gateway.usage_events WHERE id IN (SELECT id FROM gateway.usage_events "
    "WHERE created_at < now() - make_interval(days => %s) ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
)


async def delete_expired(
    pool: AsyncConnectionPool, retention_days: int, *, batch: int = RETENTION_BATCH
) -> int:
    """Deletes rows older than `retention_days` in batches (short transactions); returns how many."""
    if retention_days <= 0:
        return 0
    total = 0
    while True:
        async with pool.connection() as conn:
            cur = await conn.execute(_DELETE_EXPIRED, (retention_days, batch))
            deleted = cur.rowcount
        total += deleted
        if deleted < batch:
            return total
