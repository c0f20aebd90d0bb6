"""The background writer of the request log: a bounded queue, batched inserts, one bad row never
blocking the others.

- Rows are written every GATEWAY_USAGE_FLUSH_SECONDS in batches (executemany, pipelined by psycopg).
- Text PostgreSQL cannot store (NUL, lone surrogates) is replaced before a row is sent
  (storable_text.py) and the row counted in `llmsuite_gateway_usage_rows_sanitized_total`.
- A batch the database fails as a whole (unreachable, table missing) is kept and retried with capped
  exponential backoff. A batch it refuses because of a row's data (a data or constraint error) is
  split until the refused row stands alone; that row is dropped, counted under
  `llmsuite_gateway_usage_rows_dropped_total{reason="rejected"}` and logged by request id only.
- The bound is enforced at admission, not here: while the queue holds GATEWAY_USAGE_QUEUE_MAX rows,
  new chat requests get 503 `overloaded` (see `check_capacity`), so the requests already admitted
  can always queue their row. The queue can therefore exceed its bound by the requests in flight.
- On shutdown, `stop` writes what is queued within its deadline, each attempt cut off at the
  deadline; rows still unwritten then are dropped and counted (`reason="shutdown"`), their number
  logged without content, so the process always exits within its grace.
- Rows older than GATEWAY_REQUEST_LOG_RETENTION_DAYS are deleted periodically.
"""

import asyncio
import logging
import random
import time
from collections import deque
from typing import Any

import psycopg

from ..api.errors import ApiError
from .request_log import COLUMNS, INSERT, RequestEntry, delete_expired, row_of
from .storable_text import storable_row
from .summaries import ModelSummarizer, last_user_turn

log = logging.getLogger(__name__)

BATCH_SIZE = 500
_BACKOFF_FIRST_SECONDS = 0.2
_BACKOFF_MAX_SECONDS = 10.0
RETENTION_INTERVAL_SECONDS = 3600.0
# Refused requests retry after this; a stuck database needs minutes, a burst seconds.
OVERLOADED_RETRY_AFTER_SECONDS = 2
_SUMMARY_CONCURRENCY = 8
_REQUEST_ID = [c.strip() for c in COLUMNS.split(",")].index("request_id")
# Errors caused by what a row holds (SQLSTATE classes 22 and 23, or a value psycopg cannot send):
# retrying the same row can never succeed. Anything else is the database's state and is retried.
_ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError, UnicodeError)


def refused_row(err: BaseException) -> bool:
    return isinstance(err, _ROW_ERRORS)


class RequestLogWriter:
    def __init__(
        self,
        database: Any,
        *,
        flush_seconds: float,
        queue_max: int,
        metrics: Any = None,
        summarizer: ModelSummarizer | None = None,
        retention_days: int = 0,
        batch_size: int = BATCH_SIZE,
        retention_interval_seconds: float = RETENTION_INTERVAL_SECONDS,
    ) -> None:
        self._db = database
        self._flush_seconds = flush_seconds
        self._queue_max = queue_max
        self._summarizer = summarizer
        self._retention_days = retention_days
        self._batch_size = batch_size
        self._retention_interval = retention_interval_seconds
        self._queue: deque[RequestEntry] = deque()
        # The batch being written: taken off the queue, kept until the database has it.
        self._pending: list[tuple[Any, ...]] = []
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._draining = False
        self._failures = 0
        self._rows_written = metrics.usage_rows_written if metrics is not None else None
        self._write_failures = metrics.usage_write_failures if metrics is not None else None
        self._rows_sanitized = metrics.usage_rows_sanitized if metrics is not None else None
        self._rows_dropped = metrics.usage_rows_dropped if metrics is not None else None
        if metrics is not None:
            metrics.usage_queue_depth.set_function(lambda: self.depth)

    @property
    def enabled(self) -> bool:
        return self._db is not None

    @property
    def depth(self) -> int:
        return len(self._queue) + len(self._pending)

    # --- the request path -----------------------------------------------------------------------------

    def check_capacity(self) -> None:
        """Back-pressure: refuse new work rather than drop rows when the writer is behind."""
        if self.enabled and self.depth >= self._queue_max:
            raise ApiError(
                503,
                "the gateway is overloaded: its request log is not keeping up; retry shortly",
                code="overloaded",
                headers={"retry-after": str(OVERLOADED_RETRY_AFTER_SECONDS)},
            )

    def put(self, entry: RequestEntry) -> None:
        if self.enabled:
            self._queue.append(entry)

    # --- writing --------------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.enabled:
            return
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._write_loop()))
        if self._retention_days > 0:
            self._tasks.append(loop.create_task(self._retention_loop()))

    async def stop(self, timeout: float) -> None:
        """Stops the loops, then writes what is queued, retrying until `timeout` runs out.

        Every attempt is cut off at the deadline (a database that hangs must not hold the exit);
        whatever is still unwritten then is dropped and counted.
        """
        self._draining = True
        deadline = time.monotonic() + max(0.0, timeout)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # A write cancelled mid-query waits for the database to acknowledge; never past the deadline.
            await asyncio.wait(self._tasks, timeout=max(0.001, deadline - time.monotonic()))
        self._tasks.clear()
        if not self.enabled or self.depth == 0:
            return
        written, backoff = 0, _BACKOFF_FIRST_SECONDS
        while self.depth and (left := deadline - time.monotonic()) > 0:
            try:
                written += await asyncio.wait_for(self.flush(), left)
            except TimeoutError:
                break
            except Exception:  # noqa: BLE001 - retried until the deadline; the rows stay queued
                log.warning("request log write failed while draining", exc_info=True)
                await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, _BACKOFF_MAX_SECONDS)
        if self.depth:
            dropped = self._drop_all()
            log.error("request log rows not written before exit", extra={"rows": dropped, "written": written})
        else:
            log.info("request log drained", extra={"rows": written})

    def _drop_all(self) -> int:
        dropped = self.depth
        self._queue.clear()
        self._pending = []
        if self._rows_dropped is not None:
            self._rows_dropped.labels("shutdown").inc(dropped)
        return dropped

    async def flush(self) -> int:
        """Writes every row queued now; raises when the database fails (the rows stay queued).

        A row the database refuses for its own content is dropped (counted), never retried.
        """
        if not self.enabled or self._db.pool is None:
            return 0
        written = 0
        async with self._lock:
            while self._pending or self._queue:
                if not self._pending:
                    take = min(self._batch_size, len(self._queue))
                    entries = [self._queue.popleft() for _ in range(take)]
                    self._pending = await self._rows(entries)
                written += await self._write(list(self._pending))
        return written

    async def _write(self, rows: list[tuple[Any, ...]]) -> int:
        """Inserts `rows`, halving a batch the database refuses until the refused row stands alone.

        Rows leave `_pending` as soon as they are stored or dropped, so a retry after an outage
        mid-way never writes a row twice.
        """
        try:
            await self._insert(rows)
        except Exception as err:
            if not refused_row(err):
                raise
            if len(rows) == 1:
                self._settle(rows)
                self._reject(rows[0], err)
                return 0
            half = len(rows) // 2
            return await self._write(rows[:half]) + await self._write(rows[half:])
        self._settle(rows)
        if self._rows_written is not None:
            self._rows_written.inc(len(rows))
        return len(rows)

    def _settle(self, rows: list[tuple[Any, ...]]) -> None:
        if len(rows) == len(self._pending):
            self._pending = []
            return
        done = {id(r) for r in rows}
        self._pending = [r for r in self._pending if id(r) not in done]

    def _reject(self, row: tuple[Any, ...], err: BaseException) -> None:
        # The row's content stays out of the log: only its request id and the kind of error.
        log.error(
            "request log row refused by the database; dropped",
            extra={"request_id": row[_REQUEST_ID], "error": type(err).__name__},
        )
        if self._rows_dropped is not None:
            self._rows_dropped.labels("rejected").inc()

    async def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        try:
            async with self._db.pool.connection() as conn, conn.cursor() as cur:
                await cur.executemany(INSERT, rows)
        except Exception:
            if self._write_failures is not None:
                self._write_failures.inc()
            raise

    async def _rows(self, entries: list[RequestEntry]) -> list[tuple[Any, ...]]:
        summaries = await self._model_summaries(entries)
        rows = []
        for i, e in enumerate(entries):
            row, replaced = storable_row(row_of(e, summaries.get(i)))
            if replaced and self._rows_sanitized is not None:
                self._rows_sanitized.inc()
            rows.append(row)
        return rows

    async def _model_summaries(self, entries: list[RequestEntry]) -> dict[int, str]:
        """Model-written summaries, within one summary deadline per batch; the rest stay extractive.

        Skipped while draining: exit must not wait on a model.
        """
        summarizer = self._summarizer
        wanted = [i for i, e in enumerate(entries) if e.log_policy in ("summary", "full")]
        if summarizer is None or self._draining or not wanted:
            return {}
        gate = asyncio.Semaphore(_SUMMARY_CONCURRENCY)

        async def one(i: int) -> tuple[int, str | None]:
            e = entries[i]
            async with gate:
                try:
                    question = last_user_turn(e.messages)
                    text = await summarizer.summarize(e.org_id, e.request_id, question, e.answer)
                except Exception:  # noqa: BLE001 - a summary is best effort; the row is not
                    log.warning("summary model failed", exc_info=True)
                    text = None
            return i, text

        tasks = [asyncio.ensure_future(one(i)) for i in wanted]
        done, late = await asyncio.wait(tasks, timeout=summarizer.timeout_seconds)
        for task in late:
            task.cancel()
        return {i: text for i, text in (t.result() for t in done) if text}

    async def _write_loop(self) -> None:
        backoff = _BACKOFF_FIRST_SECONDS
        wait = self._flush_seconds
        while True:
            await asyncio.sleep(wait)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - kept and retried; the failure counter tells operators
                log.warning("request log write failed; retrying", extra={"rows": self.depth}, exc_info=True)
                # Full jitter keeps replicas from retrying against a recovering database in step.
                wait = random.uniform(0, backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_SECONDS)
            else:
                wait, backoff = self._flush_seconds, _BACKOFF_FIRST_SECONDS

    async def _retention_loop(self) -> None:
        # Replicas start together; a random first delay spreads their deletes.
        await asyncio.sleep(random.uniform(1.0, min(60.0, self._retention_interval)))
        while True:
            try:
                if self._db.pool is not None:
                    deleted = await delete_expired(self._db.pool, self._retention_days)
                    if deleted:
                        log.info("request log rows past retention deleted", extra={"rows": deleted})
            except Exception:  # noqa: BLE001 - the next round tries again
                log.warning("request log retention delete failed", exc_info=True)
            await asyncio.sleep(self._retention_interval)
