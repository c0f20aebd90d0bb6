"""What a route may depend on, each as an `Annotated` type to declare as a parameter:

    async def handler(body: ..., pipeline: PipelineDep, edge: EdgeDep) -> Response: ...

The app builds each of them once (app.py, `create_app`) and keeps it on `app.state`; the caller's
Identity is the one the API key middleware put on the request's state. The providers are coroutines
so FastAPI calls them inline rather than in its thread pool, and take an HTTPConnection so WebSocket
routes declare them the same way.
"""

from typing import Annotated

from fastapi import Depends
from llmsuite_common.service_tokens import TokenIssuer
from starlette.requests import HTTPConnection, Request

from ..edge.auth import Identity
from ..edge.keys import KeyStore
from ..edge.metering import Metering
from ..edge.request_edge import RequestEdge
from ..edge.response_store import ResponseStore
from ..edge.usage import UsageRecorder
from ..lifecycle import Lifecycle
from ..metrics import GatewayMetrics
from ..pipeline.backend_health import BackendHealth
from ..pipeline.chat import ChatPipeline
from ..pipeline.clients import BackendClients
from ..settings import GatewaySettings
from .serve_chat import Serving


async def _settings(conn: HTTPConnection) -> GatewaySettings:
    settings: GatewaySettings = conn.app.state.settings
    return settings


async def _pipeline(conn: HTTPConnection) -> ChatPipeline:
    pipeline: ChatPipeline = conn.app.state.pipeline
    return pipeline


async def _edge(conn: HTTPConnection) -> RequestEdge:
    edge: RequestEdge = conn.app.state.edge
    return edge


async def _metrics(conn: HTTPConnection) -> GatewayMetrics:
    metrics: GatewayMetrics = conn.app.state.metrics
    return metrics


async def _clients(conn: HTTPConnection) -> BackendClients:
    clients: BackendClients = conn.app.state.clients
    return clients


async def _responses(conn: HTTPConnection) -> ResponseStore:
    responses: ResponseStore = conn.app.state.responses
    return responses


async def _usage(conn: HTTPConnection) -> UsageRecorder:
    usage: UsageRecorder = conn.app.state.usage
    return usage


async def _metering(conn: HTTPConnection) -> Metering:
    metering: Metering = conn.app.state.metering
    return metering


async def _keys(conn: HTTPConnection) -> KeyStore | None:
    keys: KeyStore | None = conn.app.state.keys
    return keys


async def _lifecycle(conn: HTTPConnection) -> Lifecycle:
    lifecycle: Lifecycle = conn.app.state.lifecycle
    return lifecycle


async def _health(conn: HTTPConnection) -> BackendHealth:
    health: BackendHealth = conn.app.state.health
    return health


async def _token_issuer(conn: HTTPConnection) -> TokenIssuer:
    token_issuer: TokenIssuer = conn.app.state.token_issuer
    return token_issuer


async def _identity(conn: HTTPConnection) -> Identity:
    identity: Identity = conn.state.identity
    return identity


SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
PipelineDep = Annotated[ChatPipeline, Depends(_pipeline)]
EdgeDep = Annotated[RequestEdge, Depends(_edge)]
MetricsDep = Annotated[GatewayMetrics, Depends(_metrics)]
ClientsDep = Annotated[BackendClients, Depends(_clients)]
UsageDep = Annotated[UsageRecorder, Depends(_usage)]
# The Responses API's kept responses (store: true).
ResponseStoreDep = Annotated[ResponseStore, Depends(_responses)]
MeteringDep = Annotated[Metering, Depends(_metering)]
# None without a database: the admin routes answer 501.
KeysDep = Annotated[KeyStore | None, Depends(_keys)]
LifecycleDep = Annotated[Lifecycle, Depends(_lifecycle)]
HealthDep = Annotated[BackendHealth, Depends(_health)]
TokenIssuerDep = Annotated[TokenIssuer, Depends(_token_issuer)]
# The caller, as the API key middleware authenticated it.
IdentityDep = Annotated[Identity, Depends(_identity)]


async def _serving(request: Request, identity: IdentityDep) -> Serving:
    state = request.app.state
    return Serving(request, identity, state.settings, state.pipeline, state.edge, state.metrics)


# What serving a chat request takes (api/serve_chat.py): the request, its caller, the app's parts.
ServingDep = Annotated[Serving, Depends(_serving)]
