"""Merging streamed tool-call pieces into whole calls, for the Final message."""

from llmsuite.generation.v1 import generation_pb2

from .upstream import ToolCallsDelta

MAX_TOOL_CALLS = 128


class ToolCallAssembler:
    def __init__(self) -> None:
        self._calls: dict[int, generation_pb2.ToolCallDelta] = {}

    def add(self, event: ToolCallsDelta) -> None:
        for piece in event.calls:
            call = self._calls.get(piece.index)
            if call is None:
                if len(self._calls) >= MAX_TOOL_CALLS:
                    continue
                call = self._calls[piece.index] = generation_pb2.ToolCallDelta(index=piece.index)
            # The first piece names the call; later ones only append arguments.
            call.id = call.id or piece.id
            call.type = call.type or piece.type
            call.name = call.name or piece.name
            call.arguments += piece.arguments

    def calls(self) -> list[generation_pb2.ToolCallDelta]:
        return [self._calls[i] for i in sorted(self._calls)]
