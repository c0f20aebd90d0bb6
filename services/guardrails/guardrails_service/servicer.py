import grpc
from llmsuite.guardrails.v1 import guardrails_pb2, guardrails_pb2_grpc

from .checks import InputChecker


class GuardrailsServicer(guardrails_pb2_grpc.GuardrailsServiceServicer):
    def __init__(self, checker: InputChecker) -> None:
        self._checker = checker

    async def CheckInput(
        self, request: guardrails_pb2.CheckInputRequest, context: grpc.aio.ServicerContext
    ) -> guardrails_pb2.CheckInputResponse:
        report = self._checker.check([m.content for m in request.messages])
        return guardrails_pb2.CheckInputResponse(
            verdict=guardrails_pb2.VERDICT_ALLOW if report.allowed else guardrails_pb2.VERDICT_BLOCK,
            reasons=[guardrails_pb2.Reason(code=f.code, message=f.message) for f in report.findings],
            input_bytes=report.input_bytes,
            approx_tokens=report.approx_tokens,
        )
