"""How long one upstream attempt may take: the deployment's timeouts, and the caller's deadline
when it comes first."""

from dataclasses import dataclass

import aiohttp
from llmsuite_common.errors import DeadlineExceeded

from .routing_config import Timeouts

# gRPC enforces the caller's deadline itself, cancelling the call at that instant (a cancel, in the
# metrics). The attempt's own timer only backs that up, this long after, so the two never race to
# decide how the same call ended.
CALLER_DEADLINE_BACKUP_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class AttemptBudget:
    timeouts: Timeouts
    # The caller's time left, in seconds; None when the caller set no deadline.
    remaining: float | None

    @property
    def callers_deadline(self) -> bool:
        """Whether the caller's deadline ends the attempt before the deployment's total timeout."""
        return self.remaining is not None and self.remaining < self.timeouts.total

    @property
    def total(self) -> float:
        """Seconds the whole exchange may last, body included."""
        remaining = self.remaining
        if remaining is not None and remaining < self.timeouts.total:
            return remaining + CALLER_DEADLINE_BACKUP_SECONDS
        return self.timeouts.total

    def client_timeout(self, *, streamed: bool) -> aiohttp.ClientTimeout:
        t = self.timeouts
        return aiohttp.ClientTimeout(
            # The whole exchange, body included; aiohttp checks it at every read without a timer
            # per read, and only while a read waits.
            total=self.total,
            # Waiting for a pooled connection and connecting.
            connect=t.connect,
            sock_connect=t.connect,
            # Silence between two pieces of a stream. A whole answer is silent while the model
            # generates all of it: only the total timeout and the caller's deadline bound that.
            sock_read=t.read if streamed else None,
        )

    def timeout_error(self) -> DeadlineExceeded:
        """The error for an attempt that ran out of time."""
        if self.callers_deadline:
            # The caller's time ran out; no retry can help and the upstream is not to blame.
            return DeadlineExceeded("deadline exceeded waiting for the upstream", code="timeout")
        return DeadlineExceeded("upstream exceeded its total timeout", code="upstream_timeout")
