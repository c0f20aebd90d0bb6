import grpc
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc

from .checks import InputChecker
from .servicer import GuardrailsServicer
from .settings import GuardrailsSettings


class GuardrailsApp:
    service_names = (guardrails_pb2.DESCRIPTOR.services_by_name["GuardrailsService"].full_name,)

    def __init__(self, settings: GuardrailsSettings) -> None:
        checker = InputChecker(
            max_bytes=settings.guardrails_max_input_bytes,
            max_tokens=settings.guardrails_max_input_tokens,
            deny_terms=settings.guardrails_deny_terms,
        )
        self._servicer = GuardrailsServicer(checker)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        guardrails_pb2_grpc.add_GuardrailsServiceServicer_to_server(self._servicer, server)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
