"""A request that cannot get a database connection in time is told to retry (503, Retry-After).

Every PostgreSQL use in a request (key lookups, the admin API, usage and request-log reads) takes a
connection from the pool; when all are busy past GATEWAY_DATABASE_TIMEOUT_SECONDS psycopg_pool
raises PoolTimeout (TooManyRequests when its wait queue is full), and a statement running longer
is cancelled by the server (QueryCanceled, the pool's statement_timeout). That is load, not a
fault of the gateway: it is answered here, once for every route and for authentication, instead
of as a 500. So is a database that cannot be reached at all (a pooled connection it closed, a
refused connection: OperationalError), with 503 `database_unavailable`: down or restarting, it
is worth retrying shortly too.
"""

import logging

from psycopg import OperationalError
from psycopg.errors import QueryCanceled
from psycopg_pool import PoolTimeout, TooManyRequests
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..edge.auth import refuse
from .errors import ApiError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1


def database_busy() -> ApiError:
    return ApiError(
        503,
        "the gateway's database is busy; retry shortly",
        code="database_busy",
        headers={"retry-after": str(RETRY_AFTER_SECONDS)},
    )


def database_unavailable() -> ApiError:
    return ApiError(
        503,
        "the gateway's database is unavailable; retry shortly",
        code="database_unavailable",
        headers={"retry-after": str(RETRY_AFTER_SECONDS)},
    )


class DatabaseBusyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] in ("http.response.start", "websocket.accept", "websocket.close"):
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except (PoolTimeout, TooManyRequests, QueryCanceled):
            if started:
                raise
            log.warning("no database answer within the timeout", extra={"path": scope["path"]})
            await refuse(database_busy(), scope, receive, send)
        except OperationalError as err:
            if started:
                raise
            log.warning("database unreachable", extra={"path": scope["path"], "error": type(err).__name__})
            await refuse(database_unavailable(), scope, receive, send)
