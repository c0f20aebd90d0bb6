"""The grpc core I/O path the services run on: the POSIX one, not the EventEngine experiments.

grpcio turns on, by default, experiments that move its TCP endpoints and completion queues onto
its EventEngine. With the Python asyncio stack each streamed message then costs more CPU on both
sides: `python -m bench.generation.grpc_floor` (a servicer that only yields deltas and a client
that only reads them, 16 streams of 200 messages) measured 134-212 µs per message with the
defaults and 97-137 µs with these four experiments off, alternating on one 2-core box; through the
whole chain a 200-chunk streamed answer cost 13 % less CPU (docs/performance.md). The POSIX path is
the one grpc ran before those experiments and still ships and tests.

An operator's own `GRPC_EXPERIMENTS` (even an empty one, which restores grpc's defaults) is kept.
grpc reads the variable once, when it is first imported, so this must run before that.
"""

import os
import sys

DEFAULT = ",".join(
    f"-{name}"
    for name in (
        "event_engine_client",
        "event_engine_listener",
        "event_engine_for_all_other_endpoints",
        "event_engine_callback_cq",
    )
)


def apply_default() -> None:
    """Set the default unless the environment names its own; a no-op once grpc is imported."""
    if "grpc" not in sys.modules:
        os.environ.setdefault("GRPC_EXPERIMENTS", DEFAULT)
