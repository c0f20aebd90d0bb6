import time
from dataclasses import dataclass


@dataclass
class Lifecycle:
    """Process state the app reports: while draining, /readyz fails so traffic moves elsewhere."""

    draining: bool = False
    # Monotonic time by which shutdown must be over (drain + grace from the first SIGTERM); None
    # until a signal arrives.
    exit_deadline: float | None = None

    def seconds_left(self, default: float) -> float:
        """What remains of the shutdown budget, or `default` when no signal set one."""
        if self.exit_deadline is None:
            return default
        return max(0.0, self.exit_deadline - time.monotonic())
