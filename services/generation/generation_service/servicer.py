import logging
from contextlib import aclosing

import grpc
from llmsuite.generation.v1 import generation_pb2, generation_pb2_grpc
from llmsuite_common.call_auth import tenant_of
from llmsuite_common.clock import Clock, monotonic
from opentelemetry import trace

from .accounting import Accounting
from .metrics import GenerationMetrics
from .pool import UpstreamPool
from .reply import StreamedReply, WholeReply
from .routing_source import RoutingSource
from .upstream_request import bodies_for, has_images, route_request

log = logging.getLogger(__name__)

OWNED_BY = "llmsuite"


class GenerationServicer(generation_pb2_grpc.GenerationServiceServicer):
    def __init__(
        self,
        routing: RoutingSource,
        pool: UpstreamPool,
        metrics: GenerationMetrics,
        *,
        clock: Clock = monotonic,
    ) -> None:
        self._routing = routing
        self._pool = pool
        self._metrics = metrics
        self._clock = clock

    async def Generate(self, request: generation_pb2.GenerateRequest, context: grpc.aio.ServicerContext):  # type: ignore[override]
        started = self._clock()
        table = self._routing.table
        org_id = tenant_of(request.context)
        route = table.resolve(route_request(request, org_id))
        body_for = bodies_for(request, route, org_max_tokens=table.org_max_tokens(org_id))
        account = Accounting(
            request.model,
            (m.content for m in request.messages),
            trace.get_current_span(),
            self._metrics,
            org=org_id,
            started=started,
            clock=self._clock,
        )
        reply = WholeReply(account) if request.whole_answer else StreamedReply(account)
        stream = self._pool.stream(
            table.chain(route, vision=has_images(request)),
            body_for,
            model=request.model,
            remaining=context.time_remaining,
        )
        try:
            # aclosing: however this ends (cancel, deadline, error, early stop), the
            # upstream response is closed now rather than when the garbage collector gets to it.
            async with aclosing(stream) as events:
                async for event in events:
                    for message in reply.feed(event):
                        yield message
                    if reply.early_finish:
                        break
            for message in reply.end():
                yield message
        except BaseException as exc:
            account.fail(exc)
            raise
        finally:
            account.close()

    async def Complete(
        self, request: generation_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.CompleteResponse:
        """Generate's whole answer as one reply: a unary call costs less than a two-message stream."""
        request.whole_answer = True
        reply = generation_pb2.CompleteResponse()
        async with aclosing(self.Generate(request, context)) as events:
            async for event in events:
                kind = event.WhichOneof("event")
                if kind == "delta":
                    reply.delta.CopyFrom(event.delta)
                elif kind == "final":
                    reply.final.CopyFrom(event.final)
        return reply

    async def ListModels(
        self, request: generation_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.ListModelsResponse:
        return generation_pb2.ListModelsResponse(
            models=[
                generation_pb2.Model(id=name, owned_by=OWNED_BY)
                for name in self._routing.table.public_names()
            ]
        )
